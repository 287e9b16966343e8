#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import AmpSystemd
import Logging
import ServiceLifecycle
import SystemSupport
import ThreadSupport

/// The service of a project whose PostgreSQL runs elsewhere (`[postgres] url`): no local
/// cluster. It waits for the server's first answer (READY=1 then), and checks it every
/// ``checkInterval`` from then on: the status and `STATUS=` follow its health, the journal says
/// when it becomes unreachable and reachable again, and the watchdog guards ampd only (an
/// unreachable remote is not ampd's fault, and a restart would not help).
///
/// A failure that waiting cannot fix (a refused password, a certificate that does not verify,
/// a missing database) ends the start at once with one line naming host, port and libpq's
/// reason; an unreachable server ends it after the start timeout.
struct ExternalService: Service {
    let server: ExternalServer
    let notifier: SystemdNotifier
    let board: StatusBoard
    let logger: Logger
    let startTimeout: Duration
    /// Whether to print the ready line on standard output (not when logging to the journal).
    var printsReadyLine = false
    var checkInterval: Duration = .seconds(5)

    func run() async throws {
        try await Supervisor.supervising(notifier: notifier, board: board, logger: logger) { try await serve($0) }
    }

    private func probe() async -> Result<ExternalServer.Answer, LibPQError> {
        let server = server
        return await runOnThread(name: "amp-external") { server.probe() }
    }

    private func serve(_ supervisor: Supervisor) async throws {
        let display = server.display
        supervisor.handle(.phase(.connecting(server: display)))
        logger.info("connecting to the external server \(display)")
        let deadline = ContinuousClock.now + startTimeout
        var lastReason: String?
        var answer: ExternalServer.Answer?
        while answer == nil {
            switch await probe() {
            case .success(let a): answer = a
            case .failure(let error):
                if ExternalServer.isPermanent(error) {
                    let message = "the external server refused amp: \(error.message); fix the URL in [postgres] url or the password (~/.pgpass, or `ampctl init --external URL` again)"
                    supervisor.handle(.phase(.failed(message)))
                    throw DaemonError(.noPermission, message)
                }
                if error.message != lastReason {
                    logger.warning("waiting for the external server: \(error.message)")
                    lastReason = error.message
                }
                guard ContinuousClock.now < deadline else {
                    let message = "the external server did not answer within \(startTimeout): \(error.message); check that it runs and is reachable from here"
                    supervisor.handle(.phase(.failed(message)))
                    throw DaemonError(.unavailable, message)
                }
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                } catch {
                    logger.info("shutdown requested while waiting for the external server")
                    return
                }
            }
        }
        guard let answer else { return }
        let handle = PostgresHandle.external(server, answer: answer)
        board.external(handle, server: server)
        supervisor.handle(.phase(.external(server: display)))
        logger.notice("external server \(display) answers: PostgreSQL \(answer.version), role \(answer.user), database \(answer.database)")
        if printsReadyLine { printLine("ready: external server \(display) (PostgreSQL \(answer.version)) — connect with: ampctl psql") }

        // Checks until a graceful shutdown.
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: checkInterval)
                    switch await probe() {
                    case .success: supervisor.handle(.healthChecked(healthy: true, reason: ""))
                    case .failure(let error): supervisor.handle(.healthChecked(healthy: false, reason: error.message))
                    }
                }
            }
        } catch {}
        supervisor.handle(.phase(.stopping))
    }
}
