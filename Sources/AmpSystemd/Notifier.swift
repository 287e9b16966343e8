#if canImport(Glibc)
import Glibc
#endif
import CSystemd

/// Talks to the service manager through `sd_notify(3)`.
///
/// Without `$NOTIFY_SOCKET` (foreground runs) every call is a no-op. Messages are built in
/// Swift and passed whole, since Swift cannot call the variadic `sd_notifyf`.
/// See <https://www.freedesktop.org/software/systemd/man/252/sd_notify.html>.
public struct SystemdNotifier: Sendable {
    /// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
    public let isActive: Bool
    /// The watchdog interval the manager expects pings within (`WatchdogSec=`), when it
    /// enabled the watchdog for this process (`sd_watchdog_enabled(3)`: `$WATCHDOG_USEC`, and
    /// `$WATCHDOG_PID` naming this process).
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        isActive = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
        var usec: UInt64 = 0
        watchdogInterval = isActive && sd_watchdog_enabled(0, &usec) > 0 && usec > 0 ? .microseconds(Int64(clamping: usec)) : nil
    }

    /// Sends the messages, one `KEY=VALUE` per line.
    public func send(_ messages: [NotifyMessage]) {
        guard isActive, !messages.isEmpty else { return }
        _ = sd_notify(0, messages.map(\.assignment).joined(separator: "\n"))
    }

    /// `STATUS=text`.
    public func status(_ text: String) { send([.status(text)]) }

    /// `ERRNO=` and a status text, for a fatal error.
    public func failed(status: String, errno code: Int32? = nil) {
        var messages: [NotifyMessage] = [.status(status)]
        if let code { messages.append(.errno(code)) }
        send(messages)
    }
}

/// One `sd_notify` assignment.
public enum NotifyMessage: Sendable, Equatable {
    /// `READY=1`: start-up is finished.
    case ready
    /// `STOPPING=1`: shutdown has begun.
    case stopping
    /// `STATUS=…`: a one-line status for `systemctl status`.
    case status(String)
    /// `WATCHDOG=1`: the keep-alive ping.
    case watchdog
    /// `EXTEND_TIMEOUT_USEC=…`: start-up or shutdown needs this much more time from now.
    case extendTimeout(Duration)
    /// `ERRNO=…`: the errno-style cause of a failure.
    case errno(Int32)

    /// The `KEY=VALUE` text.
    public var assignment: String {
        switch self {
        case .ready: return "READY=1"
        case .stopping: return "STOPPING=1"
        case .status(let text): return "STATUS=" + text.replacing("\n", with: " ")
        case .watchdog: return "WATCHDOG=1"
        case .extendTimeout(let d):
            let usec = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
            return "EXTEND_TIMEOUT_USEC=\(max(0, usec))"
        case .errno(let code): return "ERRNO=\(code)"
        }
    }
}
