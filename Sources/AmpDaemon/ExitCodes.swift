#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import SystemSupport

/// `ampd`'s exit codes, from `sysexits.h` where one fits. Documented in the README and
/// `ampd(8)`; the unit's `RestartPreventExitStatus=` lists the ones a restart cannot fix.
public enum AmpdExitCode: Int32, CaseIterable, Sendable {
    /// Clean stop.
    case success = 0
    /// An unexpected internal error.
    case failure = 1
    /// Bad command-line usage (EX_USAGE).
    case usage = 64
    /// The data directory is unusable as it is: another major version, or not a cluster (EX_DATAERR).
    case dataError = 65
    /// PostgreSQL binaries are missing (EX_UNAVAILABLE).
    case unavailable = 69
    /// PostgreSQL failed to start, or exited while running (EX_SOFTWARE).
    case postgresFailed = 70
    /// The amp dir or socket directory cannot be created, or the disk is full (EX_CANTCREAT).
    case cannotCreate = 73
    /// Another ampd holds this amp dir (EX_TEMPFAIL).
    case busy = 75
    /// Running as root without an unprivileged account for PostgreSQL (EX_NOPERM).
    case noPermission = 77
    /// Bad configuration: config.toml or AMP_* variables (EX_CONFIG).
    case config = 78

    /// What the code means, for documentation.
    public var meaning: String {
        switch self {
        case .success: return "stopped cleanly"
        case .failure: return "unexpected internal error"
        case .usage: return "bad command-line usage"
        case .dataError: return "data directory unusable (other PostgreSQL major version, or not a cluster)"
        case .unavailable: return "PostgreSQL binaries not found"
        case .postgresFailed: return "PostgreSQL failed to start or exited unexpectedly"
        case .cannotCreate: return "amp dir or socket directory cannot be created, or the disk is full"
        case .busy: return "another ampd is running for this amp dir"
        case .noPermission: return "running as root without an unprivileged account for PostgreSQL"
        case .config: return "configuration error (config.toml or environment)"
        }
    }

    /// The errno-style cause sent to systemd with `ERRNO=` (shown by `systemctl status`).
    public var errnoValue: Int32? {
        switch self {
        case .success: return nil
        case .failure, .postgresFailed: return EIO
        case .usage, .config, .dataError: return EINVAL
        case .unavailable: return ENOENT
        case .cannotCreate: return EACCES
        case .busy: return EBUSY
        case .noPermission: return EPERM
        }
    }

    /// The exit code for a PostgreSQL management error.
    public init(_ error: PostgresError) {
        switch error.code {
        case .binariesNotFound: self = .unavailable
        case .versionMismatch, .notACluster: self = .dataError
        case .dataDirectoryUnusable, .diskFull: self = .cannotCreate
        case .permissionDenied: self = .noPermission
        case .initdbFailed, .startFailed, .startTimedOut, .exitedUnexpectedly, .orphanNotStopped: self = .postgresFailed
        }
    }

    /// The exit code for a configuration error.
    public init(_ error: ConfigError) {
        switch error.code {
        case .malformedFile, .invalidValue, .invalidEnvironment: self = .config
        case .invalidFlag: self = .usage
        case .ampDirUnusable: self = .cannotCreate
        }
    }
}

/// A failure of the daemon's own setup, with its exit code.
struct DaemonError: Error {
    var code: AmpdExitCode
    var message: String
    init(_ code: AmpdExitCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
