import Logging
import SystemSupport

/// A server of its own on a cluster nobody else serves — for `ampctl upgrade`'s follow-up work
/// and for `push`/`pull` when the project is not running: started on a private socket
/// directory (0700, made here and removed afterwards), with no TCP and no log, for the length
/// of `body`, then stopped. The caller holds the project's lock, so no ampd starts meanwhile.
public enum PrivateServer {
    public static func with<T>(
        dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion, socketDirectory: String, _ body: (PostgresHandle) async -> T
    ) async throws(PostgresError) -> T {
        do {
            try makeDirectories(socketDirectory)
        } catch {
            throw PostgresError(.dataDirectoryUnusable, "cannot make the socket directory \(socketDirectory): \(error)")
        }
        defer { try? removeTree(socketDirectory) }
        let server = try await PostgresBuilder(dataDirectory: dataDirectory).binaries(binaries, version: version).socketDirectory(socketDirectory)
            .developmentDefaults(false).logger(PostgresBuilder.silentLogger).start()
        let result = await body(server.handle)
        _ = await server.stop()
        return result
    }
}
