#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import SystemSupport

extension ExitStatus {
    /// The codes `ampd` exits with.
    public static let ampdCodes: [ExitStatus] = [.success, .failure, .usage, .dataError, .unavailable, .software, .cannotCreate, .tempFail, .noPermission, .config]

    /// What the code means for `ampd`, for documentation.
    public var ampdMeaning: String {
        switch self {
        case .success: return "stopped cleanly"
        case .failure: return "unexpected internal error"
        case .usage: return "bad command-line usage"
        case .dataError: return "data directory unusable (other PostgreSQL major version, or not a cluster)"
        case .unavailable: return "PostgreSQL binaries not found, the TCP listen port unusable, or the external server unreachable at start"
        case .software: return "PostgreSQL failed to start or exited unexpectedly"
        case .cannotCreate: return "amp dir or socket directory cannot be created, or the disk is full"
        case .tempFail: return "another ampd is running for this amp dir"
        case .noPermission: return "running as root without an unprivileged account for PostgreSQL, an external server that refused amp, or a runtime directory another user could have made"
        case .config: return "configuration error (config.toml or environment)"
        case .notRunning, .noInput, .protocolError, .hangUp, .interrupted, .terminated: return "not used by ampd"
        }
    }

    /// The errno-style cause sent to systemd with `ERRNO=` (shown by `systemctl status`).
    public var errnoValue: Int32? {
        switch self {
        case .success: return nil
        case .hangUp, .interrupted, .terminated: return EINTR
        case .failure, .software, .protocolError: return EIO
        case .usage, .config, .dataError: return EINVAL
        case .unavailable, .noInput, .notRunning: return ENOENT
        case .cannotCreate: return EACCES
        case .tempFail: return EBUSY
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
        case .initdbFailed, .startFailed, .startTimedOut, .exitedUnexpectedly, .orphanNotStopped: self = .software
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
    var code: ExitStatus
    var message: String
    /// Lines that follow the message in the log (PostgreSQL's own words).
    var details: [String] = []
    init(_ code: ExitStatus, _ message: String, details: [String] = []) {
        self.code = code
        self.message = message
        self.details = details
    }
}
