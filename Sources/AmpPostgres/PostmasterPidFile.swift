#if canImport(Glibc)
import Glibc
#endif
import CSpawn
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

    /// Whether line 8 says the server accepts connections.
    public var isReady: Bool { status == "ready" }
}

/// What a PID found in a lock file refers to now.
public enum ProcessIdentity: Sendable, Equatable {
    /// No such process.
    case gone
    /// A PostgreSQL server (`postgres`/`postmaster` executable) whose working directory is the
    /// data directory: the postmaster chdir()s into its data directory at start.
    case postmaster(executable: String)
    /// Some other process, which must never be signalled.
    case unrelated(description: String)
}

/// Identifies processes through `/proc` — by executable and working directory, never by
/// PID alone (the same checks Debian's `pg_ctlcluster` makes).
public enum ProcessInspector {
    /// The scheduler state letter of `pid` from `/proc/PID/stat` (`R`, `S`, `D`, `T` stopped,
    /// `t` traced, `Z` zombie …), or `nil` when the process is gone.
    /// See proc(5).
    public static func state(pid: pid_t, procRoot: String = "/proc") -> Character? {
        guard let stat = FileSystem.readText("\(procRoot)/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // "PID (comm) S …": the comm may contain spaces and parentheses; the state follows the last ")".
        return stat[stat.index(after: close)...].first { $0 != " " }
    }

    /// What `pid` is, relative to `dataDirectory`.
    public static func identify(pid: pid_t, dataDirectory: String, procRoot: String = "/proc") -> ProcessIdentity {
        if kill(pid, 0) != 0 && errno == ESRCH { return .gone }
        guard FileSystem.exists("\(procRoot)/\(pid)") else { return .gone }
        let comm = FileSystem.readText("\(procRoot)/\(pid)/comm")?.trimmingWhitespace ?? "?"
        guard var exe = FileSystem.readLink("\(procRoot)/\(pid)/exe") else {
            // Not ours to inspect (another user's process): never treat it as our server.
            return .unrelated(description: "\(comm) (PID \(pid), not inspectable)")
        }
        if exe.hasSuffix(" (deleted)") { exe = String(exe.dropLast(" (deleted)".count)) }
        let name = FileSystem.baseName(exe)
        guard name == "postgres" || name == "postmaster" else {
            return .unrelated(description: "\(exe) (PID \(pid))")
        }
        let cwd = FileSystem.readLink("\(procRoot)/\(pid)/cwd")
        let wanted = FileSystem.realPath(dataDirectory) ?? dataDirectory
        guard let cwd, cwd == wanted else {
            return .unrelated(description: "\(exe) serving \(cwd ?? "an unknown directory") (PID \(pid))")
        }
        return .postmaster(executable: exe)
    }
}

/// Deals with what a previous run left behind in a data directory and socket directory.
enum LeftoverCleanup {
    /// Stops a leftover postmaster that serves `dataDirectory` and removes stale lock files.
    ///
    /// A live process is signalled only when ``ProcessInspector`` identifies it as a postmaster
    /// of this data directory, through a pidfd opened *before* the check so the signal cannot
    /// reach a process that took over the PID in between. It gets a fast shutdown (SIGINT), then
    /// an immediate shutdown (SIGQUIT), then SIGKILL.
    static func run(dataDirectory: String, socketLockFile: String, stopTimeout: Duration, logger: Logger) async throws(PostgresError) {
        let pidFile = dataDirectory + "/postmaster.pid"
        if let text = FileSystem.readText(pidFile) {
            if let parsed = PostmasterPidFile.parse(text) {
                try await handle(pid: parsed.pid, lockFile: pidFile, dataDirectory: dataDirectory, stopTimeout: stopTimeout, logger: logger)
            } else {
                logger.notice("removing unreadable lock file", metadata: ["file": "\(pidFile)"])
                try FileSystem.remove(pidFile)
            }
        }
        if let text = FileSystem.readText(socketLockFile) {
            if let parsed = PostmasterPidFile.parse(text) {
                try await handle(pid: parsed.pid, lockFile: socketLockFile, dataDirectory: dataDirectory, stopTimeout: stopTimeout, logger: logger)
            } else {
                try FileSystem.remove(socketLockFile)
            }
        }
    }

    private static func handle(pid: pid_t, lockFile: String, dataDirectory: String, stopTimeout: Duration, logger: Logger) async throws(PostgresError) {
        let pidfd = amp_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        switch ProcessInspector.identify(pid: pid, dataDirectory: dataDirectory) {
        case .gone:
            logger.notice("removing stale lock file: its process is gone", metadata: ["file": "\(lockFile)", "pid": "\(pid)"])
            try FileSystem.remove(lockFile)
        case .unrelated(let description):
            logger.notice(
                "removing stale lock file: its PID now belongs to an unrelated process, which is left alone",
                metadata: ["file": "\(lockFile)", "pid": "\(pid)", "process": "\(description)"])
            try FileSystem.remove(lockFile)
        case .postmaster(let executable):
            guard pidfd >= 0 else {
                throw PostgresError(
                    .orphanNotStopped,
                    "a leftover PostgreSQL (PID \(pid)) still serves \(dataDirectory), and this kernel has no pidfd "
                        + "to signal it safely; stop it with `kill -INT \(pid)` and start again")
            }
            logger.warning(
                "stopping a leftover PostgreSQL server of this data directory (fast shutdown)",
                metadata: ["pid": "\(pid)", "executable": "\(executable)"])
            for (signal, wait) in [(SIGINT, stopTimeout), (SIGQUIT, Duration.seconds(5)), (SIGKILL, Duration.seconds(5))] {
                if amp_pidfd_send_signal(pidfd, signal) != 0 && errno == ESRCH { break }
                if await waitForExit(pidfd: pidfd, timeout: wait) { break }
                logger.warning("leftover PostgreSQL did not stop after \(signalName(signal))", metadata: ["pid": "\(pid)"])
            }
            guard await waitForExit(pidfd: pidfd, timeout: .zero) else {
                throw PostgresError(
                    .orphanNotStopped,
                    "a leftover PostgreSQL (PID \(pid)) serving \(dataDirectory) does not stop; find out why (`ps -o stat,cmd -p \(pid)`)")
            }
            // A fast shutdown removes the lock file; a killed server leaves it behind.
            if FileSystem.exists(lockFile) {
                logger.notice("removing the lock file left by the stopped server", metadata: ["file": "\(lockFile)"])
                try FileSystem.remove(lockFile)
            }
        }
    }

    /// Waits until the process behind `pidfd` exits (the descriptor becomes readable).
    static func waitForExit(pidfd: Int32, timeout: Duration) async -> Bool {
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return await runOnThread(name: "amp-pidfd") {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            var rc: Int32
            repeat { rc = poll(&fds, 1, ms) } while rc < 0 && errno == EINTR
            return rc > 0
        }
    }
}
