#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Logging
import SystemSupport

/// The contents of `postmaster.pid`, the lock file PostgreSQL keeps in its data directory.
///
/// Lines: 1 PID, 2 data directory, 3 start time, 4 port, 5 first socket directory,
/// 6 first listen address, 7 shared memory key, 8 status (`starting`, `stopping`, `ready`,
/// `standby`). See <https://www.postgresql.org/docs/15/storage-file-layout.html> and
/// `src/include/utils/pidfile.h`.
public struct PostmasterPidFile: Sendable, Equatable {
    public var pid: pid_t
    public var dataDirectory: String?
    public var port: Int?
    public var socketDirectory: String?
    public var status: String?

    public init(pid: pid_t, dataDirectory: String?, port: Int?, socketDirectory: String?, status: String?) {
        self.pid = pid
        self.dataDirectory = dataDirectory
        self.port = port
        self.socketDirectory = socketDirectory
        self.status = status
    }

    /// Parses the file's text; `nil` when the first line is not a PID.
    public static func parse(_ text: String) -> PostmasterPidFile? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0).trimmingWhitespace }
        guard let first = lines.first, let pid = pid_t(first), pid > 0 else { return nil }
        func line(_ n: Int) -> String? { lines.count >= n && !lines[n - 1].isEmpty ? lines[n - 1] : nil }
        return PostmasterPidFile(
            pid: pid, dataDirectory: line(2), port: line(4).flatMap { Int($0) },
            socketDirectory: line(5), status: line(8))
    }

    /// Whether line 8 says the server accepts connections (`ready`, or `standby`: a hot
    /// standby that takes read-only ones).
    public var isReady: Bool { status == "ready" || status == "standby" }
}
