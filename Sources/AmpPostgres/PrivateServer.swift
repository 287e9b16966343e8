import ChildProcess
import Logging
import SystemSupport

/// A server of its own on a cluster nobody else serves — for `ampctl upgrade`'s follow-up work
/// and for `push`/`pull` when the project is not running: started on a private socket
/// directory (0700, made here and removed afterwards), with no TCP and no log, for the length
/// of `body`, then stopped. The caller holds the project's lock, so no ampd starts meanwhile.
public enum PrivateServer {
    /// Why there was no private server.
    public enum Failure: Error, Sendable {
        /// The socket directory could not be made (the reason).
        case socketDirectory(String)
        /// PostgreSQL did not start.
        case start(PostgresError)
    }

    /// - Parameters:
    ///   - socketDirectory: made here and removed afterwards; nil: the data directory (or a
    ///     short private directory when that path is too long).
    ///   - account: the account PostgreSQL runs as when the caller is root.
    public static func with<T>(
        dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion, socketDirectory: String?, account: ProcessCredentials? = nil,
        _ body: (PostgresHandle) async -> T
    ) async throws(Failure) -> T {
        if let socketDirectory {
            do {
                try makeDirectories(socketDirectory)
            } catch {
                throw .socketDirectory("\(error)")
            }
        }
        defer { if let socketDirectory { try? removeTree(socketDirectory) } }
        let server: PostgresServer
        do {
            server = try await PostgresBuilder(dataDirectory: dataDirectory).binaries(binaries, version: version).socketDirectory(socketDirectory)
                .user(account).developmentDefaults(false).logger(PostgresBuilder.silentLogger).start()
        } catch {
            throw .start(error)
        }
        let result = await body(server.handle)
        _ = await server.stop()
        return result
    }
}
