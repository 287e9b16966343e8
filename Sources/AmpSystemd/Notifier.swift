#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// Talks to the service manager through `sd_notify(3)`.
///
/// Without `$NOTIFY_SOCKET` (foreground runs) every call is a no-op. Messages are built in
/// Swift and passed whole, since Swift cannot call the variadic `sd_notifyf`.
public struct SystemdNotifier: Sendable {
    /// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
    public let isActive: Bool

    public init(environment: [String: String]) {
        isActive = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
    }

    /// Sends `KEY=VALUE` assignments, one per line.
    public func notify(_ assignments: [String]) {
        guard isActive, !assignments.isEmpty else { return }
        _ = sd_notify(0, assignments.joined(separator: "\n"))
    }

    /// `STATUS=text`.
    public func status(_ text: String) { notify(["STATUS=" + text.replacing("\n", with: " ")]) }

    /// `READY=1` with a status text.
    public func ready(status: String) { notify(["READY=1", "STATUS=" + status]) }

    /// `STOPPING=1` with a status text.
    public func stopping(status: String) { notify(["STOPPING=1", "STATUS=" + status]) }

    /// `ERRNO=` and a status text, for a fatal error.
    public func failed(status: String, errno code: Int32? = nil) {
        var a = ["STATUS=" + status.replacing("\n", with: " ")]
        if let code { a.append("ERRNO=\(code)") }
        notify(a)
    }
}
