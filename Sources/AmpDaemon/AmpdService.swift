#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpSystemd
import Logging
import ServiceLifecycle

/// The service `ampd run` runs: starts the project's PostgreSQL, announces it, and keeps it
/// until a graceful shutdown (SIGTERM/SIGINT), when it stops it.
struct AmpdService: Service {
    let builder: PostgresBuilder
    let notifier: SystemdNotifier
    let logger: Logger
    /// Called once PostgreSQL is ready, with its handle and the start-up time.
    let onReady: @Sendable (PostgresHandle, Duration) -> Void

    func run() async throws {
        let started = ContinuousClock.now
        notifier.status("starting PostgreSQL")
        let server: PostgresServer
        do {
            server = try await cancelWhenGracefulShutdown { try await builder.start() }
        } catch let error as PostgresError where error.underlying is CancellationError {
            logger.info("shutdown requested during start-up; PostgreSQL was stopped")
            return
        } catch is CancellationError {
            logger.info("shutdown requested during start-up")
            return
        }
        let elapsed = ContinuousClock.now - started
        onReady(server.handle, elapsed)
        notifier.ready(status: "ready: \(server.handle.url)")
        let notifier = self.notifier
        try await withGracefulShutdownHandler {
            try await server.run()
        } onGracefulShutdown: {
            notifier.stopping(status: "stopping")
        }
    }
}
