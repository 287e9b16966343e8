/// Every way managing a PostgreSQL cluster can fail, with what to do about it.
///
/// `message` is one line a person can act on: it names the file, value or command involved
/// and the fix. `details` carries supporting lines (for instance PostgreSQL's last log lines),
/// and `underlying` the lower-level error, if any.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// The class of failure. Callers map these to exit codes and API errors explicitly.
    public enum Code: String, Sendable, CaseIterable {
        /// No `initdb`/`postgres` binaries were found, or they do not run.
        case binariesNotFound
        /// The data directory was made by another PostgreSQL major version.
        case versionMismatch
        /// The data directory exists, is not empty, and is not a PostgreSQL cluster.
        case notACluster
        /// The data directory or socket directory cannot be created, read or used.
        case dataDirectoryUnusable
        /// PostgreSQL refuses to run as root and no other account is available.
        case permissionDenied
        /// `initdb` failed.
        case initdbFailed
        /// The server exited or did not become ready during start-up.
        case startFailed
        /// The server did not become ready within the start timeout.
        case startTimedOut
        /// The server exited while it was supposed to be running.
        case exitedUnexpectedly
        /// A leftover server for this data directory could not be stopped.
        case orphanNotStopped
        /// The disk holding the cluster (or its template) is full.
        case diskFull
    }

    public var code: Code
    public var message: String
    public var details: [String]
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, details: [String] = [], underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.details = details
        self.underlying = underlying
    }

    public var description: String { message }
}
