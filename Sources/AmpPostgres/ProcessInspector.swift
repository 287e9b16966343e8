#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Logging
import SystemSupport

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
        let wanted = realPath(dataDirectory) ?? dataDirectory
        guard let cwd, cwd == wanted else {
            return .unrelated(description: "\(exe) serving \(cwd ?? "an unknown directory") (PID \(pid))")
        }
        return .postmaster(executable: exe)
    }
}
