/// The exit codes of amp's programs (`ampd`, `ampctl`), from `sysexits.h` where one fits: one
/// list, so that a code means the same in both. Each program documents the ones it uses
/// (`ampd(8)`, `ampctl(1)`, `--help`) with its own meaning.
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    /// An unexpected internal error, or (`ampctl doctor`) a failed check.
    case failure = 1
    /// `ampctl status`: the service is not running (as `systemctl status`).
    case notRunning = 3
    /// EX_USAGE: bad command-line usage.
    case usage = 64
    /// EX_DATAERR: the data is not as expected (another major version, a database that exists).
    case dataError = 65
    /// EX_NOINPUT: no such project.
    case noInput = 66
    /// EX_UNAVAILABLE: a program or service that is needed is not there.
    case unavailable = 69
    /// EX_SOFTWARE: PostgreSQL failed.
    case software = 70
    /// EX_CANTCREAT: a file or directory cannot be created, or the disk is full.
    case cannotCreate = 73
    /// EX_TEMPFAIL: busy or not ready; try again.
    case tempFail = 75
    /// EX_PROTOCOL: the other side broke the protocol.
    case protocolError = 76
    /// EX_NOPERM: permission denied.
    case noPermission = 77
    /// EX_CONFIG: bad configuration.
    case config = 78
    /// 128 + SIGHUP, SIGINT or SIGTERM: interrupted by that signal, after cleaning up.
    case hangUp = 129
    case interrupted = 130
    case terminated = 143

    /// The status of a command that a signal interrupted (128 + SIGHUP, SIGINT, else SIGTERM).
    public static func interrupted(by signal: Int32) -> ExitStatus {
        switch signal {
        case 1: return .hangUp
        case 2: return .interrupted
        default: return .terminated
        }
    }
}
