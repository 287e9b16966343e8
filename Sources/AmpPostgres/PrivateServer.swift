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

    public static func with<T>(
        dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion, socketDirectory: String, _ body: (PostgresHandle) async -> T
    ) async throws(Failure) -> T {
        do {
            try makeDirectories(socketDirectory)
        } catch {
            throw .socketDirectory("\(error)")
        }
        defer { try? removeTree(socketDirectory) }
        let server: PostgresServer
        do {
            server = try await PostgresBuilder(dataDirectory: dataDirectory).binaries(binaries, version: version).socketDirectory(socketDirectory)
                .developmentDefaults(false).logger(PostgresBuilder.silentLogger).start()
        } catch {
            throw .start(error)
        }
        let result = await body(server.handle)
        _ = await server.stop()
        return result
    }
}
