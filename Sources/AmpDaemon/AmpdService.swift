#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import AmpSupervision
import AmpSystemd
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

/// The service `ampd run` runs: starts the project's PostgreSQL, announces it, and keeps it
/// until a graceful shutdown (SIGTERM/SIGINT), when it stops it. When PostgreSQL exits on its
/// own, ampd starts it again as the ``RestartPolicy`` decides (the varlink socket stays up;
/// the board and `STATUS=` say `restarting`), and fails (exit 70) only when restarts keep
/// failing.
///
/// Next to the server, one child task drives the ``NotifyStateMachine`` on a timer: status
/// and timeout extensions to systemd while starting and stopping, health-gated watchdog
/// pings while running.
struct AmpdService: Service {
    let builder: PostgresBuilder
    let notifier: SystemdNotifier
    let board: StatusBoard
    let logger: Logger
    /// Called once PostgreSQL is ready, with its handle, the start-up time and whether this
    /// start created the cluster.
    let onReady: @Sendable (PostgresHandle, Duration, Bool) async -> Void
    /// The seed scripts a new cluster runs before it is called ready.
    var seeding: Seeding? = nil
    /// Work that needs PostgreSQL stopped (snapshots), from the varlink handler.
    var maintenance: MaintenanceQueue? = nil
    /// Runs after every start, before the server is called ready (the TCP password).
    var prepare: (@Sendable (PostgresHandle) async -> Void)? = nil
    /// Why a start that finds no cluster must not make a new one (the archive holds the
    /// cluster that was there: a deleted data directory is restored, not replaced), or nil.
    /// Not asked when a job (a reset) removed the cluster on purpose.
    var refuseNewCluster: (@Sendable () -> String?)? = nil

    func run() async throws {
        try await Supervisor.supervising(notifier: notifier, board: board, logger: logger) { try await serve($0) }
    }

    /// What the driver keeps between actions.
    private struct Driving {
        let began = ContinuousClock.now
        var server: PostgresServer? = nil
        var lastError: (any Error)? = nil
        var readyAt = ContinuousClock.now
        var startTook = Duration.zero
        /// The maintenance job under way, what its work left, and when it came.
        var job: (job: MaintenanceJob, step: MaintenanceStep, began: ContinuousClock.Instant)? = nil
        /// What undoing the job said (nil: it is back as it was).
        var undone: MetadbError? = nil
    }

    /// Performs what the ``SupervisionStateMachine`` decides, one action at a time, and feeds
    /// it what came of each: the only place that starts, stops and waits.
    private func serve(_ supervisor: Supervisor) async throws {
        var machine = SupervisionStateMachine(hasSeeds: !(seeding?.files.isEmpty ?? true))
        var pending = machine.begin()
        var d = Driving()
        let unitRestarts = board.status.restarts
        while !pending.isEmpty {
            let action = pending.removeFirst()
            var event: SupervisionStateMachine.Event? = nil
            switch action {
            case .start:
                event = try await startServer(&d, supervisor, restarted: machine.policy.restarts > 0)
            case .seed(let first):
                event = try await seed(&d, supervisor, first: first)
            case .announce(let made):
                // The board says ready before the ready line does (a client that saw the line
                // and asks must hear "ready").
                if let server = d.server {
                    board.ready(server.handle)
                    await onReady(server.handle, ContinuousClock.now - d.began, made)
                }
            case .restarted(let restart):
                logger.notice("PostgreSQL restarted in \(d.startTook) (restart \(restart))")
            case .serve:
                event = try await serveUntilNext(&d, supervisor)
            case .runJob:
                // runUntilMaintenance stopped PostgreSQL before it returned the job.
                guard let current = d.job else { break }
                let step = await current.job.work()
                d.job = (current.job, step, current.began)
                d.undone = nil
                event = .jobWorked(reseed: step.failure == nil && step.reseed)
            case .finishJob:
                await finishJob(&d)
            case .stopServer:
                await d.server?.stop()
            case .undoJob:
                d.undone = await d.job?.step.afterStart(false)
            case .failJob(let reason):
                let message = reason.hasSuffix("the previous cluster is back") ? reason : reason + "; the previous cluster is back"
                _ = d.job?.job.result.fulfil(.failure(d.undone ?? .snapshotFailed(message: message)))
                d.job = nil
            case .wait(let delay, let restart, let reason):
                supervisor.handle(.phase(.restarting(restart: restart, reason: reason)))
                board.update { $0.restarts = unitRestarts + restart }
                logger.warning("restarting PostgreSQL in \(delay) (restart \(restart))")
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
                    event = .waited
                } catch {
                    logger.info("shutdown requested while PostgreSQL was down")
                    event = .stopRequested
                }
            case .giveUp(let message):
                supervisor.handle(.phase(.failed(message)))
                throw PostgresError(.exitedUnexpectedly, message, details: (d.lastError as? PostgresError)?.details ?? [])
            case .abort:
                _ = d.job?.job.result.fulfil(.failure(.notReady(state: "failed", phase: "PostgreSQL does not start")))
                if let lastError = d.lastError { throw lastError }
                return
            case .end:
                // A job still waiting is told; a server still running stops with the service.
                _ = d.job?.job.result.fulfil(.failure(.notReady(state: "stopping", phase: "ampd is stopping")))
                return
            }
            if let event { pending += machine.handle(event) }
        }
    }

    /// Starts PostgreSQL: `started`, `startFailed` (the error kept) or, when a stop request
    /// came first, `stopRequested`.
    private func startServer(_ d: inout Driving, _ supervisor: Supervisor, restarted: Bool) async throws -> SupervisionStateMachine.Event {
        let made = OneShot<Void>()
        let startedAt = ContinuousClock.now
        do {
            if d.job == nil, let refuse = refuseNewCluster, let why = refuse() {
                throw PostgresError(.dataDirectoryUnusable, why)
            }
            guard let next = try await start(supervisor, created: made) else { return .stopRequested }
            d.server = next
            d.startTook = ContinuousClock.now - startedAt
            return .started(created: made.value != nil)
        } catch let failure as PostgresError {
            d.lastError = failure
            if let job = d.job {
                logger.error("PostgreSQL did not start after \(job.job.description): \(failure.message)")
                return .startFailed("PostgreSQL did not start after \(job.job.description) (\(failure.message))")
            }
            if restarted { logger.error("restart failed: \(failure.message)") }
            return .startFailed(failure.message)
        }
    }

    /// Runs the seed scripts: those of the first start (a failure throws, the half-seeded
    /// cluster removed), or those a job asked for (a failure is reported, the job undone).
    private func seed(_ d: inout Driving, _ supervisor: Supervisor, first: Bool) async throws -> SupervisionStateMachine.Event {
        guard let server = d.server, let seeding else { return .seeded(problem: nil) }
        if first {
            return try await seed(server, seeding, supervisor, deadline: d.began + seeding.timeout) ? .seeded(problem: nil) : .stopRequested
        }
        let problem = await cancelWhenGracefulShutdown { await runSeeds(server, seeding, supervisor, deadline: .now + seeding.timeout) }
        return .seeded(problem: problem.map { $0 + "; the previous cluster is back" })
    }

    /// Serves until PostgreSQL exits (`exited`), a maintenance job comes (the server stopped
    /// for it) or a stop request.
    private func serveUntilNext(_ d: inout Driving, _ supervisor: Supervisor) async throws -> SupervisionStateMachine.Event? {
        guard let running = d.server else { return nil }
        supervisor.attach(running)
        board.ready(running.handle)
        supervisor.handle(.phase(.ready(url: running.handle.url)))
        d.readyAt = ContinuousClock.now
        do {
            guard let next = try await runUntilMaintenance(running, supervisor) else { return .stopRequested }
            d.job = (next, MaintenanceStep(failure: nil), ContinuousClock.now)
            return .maintenanceRequested
        } catch let error as PostgresError where error.code == .exitedUnexpectedly {
            supervisor.detach()
            logger.error("\(error.message)")
            for line in error.details { logger.error("  \(line)") }
            d.lastError = error
            return .exited(error.message, uptime: ContinuousClock.now - d.readyAt)
        }
    }

    /// The job succeeded and PostgreSQL is up: its after-start step, the ready line again for a
    /// new cluster, and the caller's answer.
    private func finishJob(_ d: inout Driving) async {
        guard let current = d.job else { return }
        let after = await current.step.afterStart(true)
        if current.step.failure == nil, after == nil, current.step.recreated, let server = d.server {
            await onReady(server.handle, ContinuousClock.now - current.began, true)
        }
        _ = current.job.result.fulfil(current.step.failure.map { .failure($0) } ?? after.map { .failure($0) } ?? .success(()))
        d.job = nil
    }

    /// Runs the server until a graceful shutdown (nil) or a maintenance job (the job, with the
    /// server stopped). An unexpected exit of PostgreSQL is thrown as before.
    private func runUntilMaintenance(_ server: PostgresServer, _ supervisor: Supervisor) async throws -> MaintenanceJob? {
        enum Outcome: Sendable { case ended, job(MaintenanceJob) }
        let queue = maintenance
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                try await withGracefulShutdownHandler {
                    try await server.run()
                } onGracefulShutdown: {
                    supervisor.handle(.phase(.stopping))
                }
                return .ended
            }
            group.addTask {
                if let queue, let job = await queue.next() { return .job(job) }
                try await Task.sleep(for: .seconds(365 * 86_400))  // until cancelled
                return .ended
            }
            let first: Outcome?
            do {
                first = try await group.next()
            } catch {
                // PostgreSQL exited; a job the other task took meanwhile is answered, not lost.
                group.cancelAll()
                while let other = try? await group.next() {
                    if case .job(let job) = other { _ = job.result.fulfil(.failure(.notReady(state: "starting", phase: "PostgreSQL exited; try again once it is back"))) }
                }
                throw error
            }
            guard let first else { return nil }
            switch first {
            case .ended:
                group.cancelAll()
                return nil
            case .job(let job):
                supervisor.detach()
                supervisor.handle(.phase(.maintenance(job.description)))
                logger.notice("\(job.description): stopping PostgreSQL")
                await server.stop()
                _ = try? await group.next()
                return job
            }
        }
    }

    /// Runs the seed scripts in order with `psql` (`ON_ERROR_STOP`, one transaction each). On a
    /// failure the new cluster is stopped and removed — it was made by this very start and
    /// holds nothing but a part of the seeds — so that the next start seeds again, and the
    /// error names the script and line.
    ///
    /// Command: `psql -X -q -v ON_ERROR_STOP=1 --single-transaction -f FILE -h SOCKETDIR -p PORT -U USER -d DB`;
    /// see <https://www.postgresql.org/docs/15/app-psql.html>.
    /// - Returns: false when a stop request came while seeding (the half-seeded cluster is
    ///   removed then too, so that the next start seeds again).
    private func seed(_ server: PostgresServer, _ seeding: Seeding, _ supervisor: Supervisor, deadline: ContinuousClock.Instant) async throws -> Bool {
        let outcome = await cancelWhenGracefulShutdown { await runSeeds(server, seeding, supervisor, deadline: deadline) }
        let interrupted = Task.isCancelled || Task.isShuttingDownGracefully
        guard var problem = outcome else { return true }
        if interrupted {
            logger.info("shutdown requested while seeding; the new cluster is removed so that the next start seeds again")
            supervisor.handle(.phase(.stopping))
        } else {
            problem += "; fix it, then start again (the new cluster was removed, so every seed runs again)"
            supervisor.handle(.phase(.failed(problem)))
        }
        _ = await server.stop()
        do {
            try removeTree(seeding.dataDirectory)
        } catch {
            throw DaemonError(.dataError, problem + "; the half-seeded cluster could not be removed (\(error)): remove \(seeding.dataDirectory) by hand")
        }
        if interrupted { return false }
        throw DaemonError(.dataError, problem)
    }

    /// Runs each seed script; the first problem, in words, or nil when all ran. psql runs as the
    /// account that runs PostgreSQL (never as root: a script's `\!` runs as that account), in a
    /// process group of its own, until `deadline` (the start timeout covers seeding) or until a
    /// stop request cancels the task, which ends it at once.
    private func runSeeds(_ server: PostgresServer, _ seeding: Seeding, _ supervisor: Supervisor, deadline: ContinuousClock.Instant) async -> String? {
        let h = server.handle
        for file in seeding.files {
            supervisor.handle(.phase(.seeding(file: file)))
            logger.info("running seed script \(file)")
            if let problem = seeding.problem(file) { return problem }
            let directory = String(file[..<(file.lastIndex(of: "/") ?? file.endIndex)])
            do {
                let output = try await ChildProcess.run(SpawnConfiguration(
                    executable: seeding.psql,
                    arguments: ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", file,
                                "-h", h.socketDirectory, "-p", "\(h.port)", "-U", h.user, "-d", h.database],
                    environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C", "PGAPPNAME": "amp-seed"], workingDirectory: directory,
                    credentials: seeding.account), deadline: deadline, limit: 64 << 10)
                if Task.isCancelled { return "seeding was interrupted by a stop request while running \(file)" }
                guard let status = output.status else {
                    return "seed script \(file) did not finish within the start timeout (\(seeding.timeout)); fix the script or raise start_timeout in \(seeding.configFile)"
                }
                if status != 0 {
                    let lines = output.text.split(separator: "\n").map(String.init)
                    let line: String = lines.first { $0.contains("ERROR") || $0.contains("FATAL") || $0.contains("error:") } ?? lines.last ?? "psql ended with exit status \(status)"
                    return "seed script failed: \(line.trimmingWhitespace)"
                }
            } catch {
                return "cannot run \(seeding.psql) for the seed scripts: \(error); install the PostgreSQL client (psql) next to postgres"
            }
        }
        logger.info("seeded the new cluster with \(seeding.files.count) script(s)")
        return nil
    }

    /// Starts PostgreSQL, reporting the phases; nil when a graceful shutdown came first.
    private func start(_ supervisor: Supervisor, created: OneShot<Void>) async throws -> PostgresServer? {
        do {
            let reporting = builder.onDiskFull { reason in
                supervisor.handle(.degraded(reason: reason, checked: false))
            }.onProgress { phase in
                if phase == .initialisingCluster { created.fulfil(()) }
                supervisor.handle(.phase(ServicePhase(phase)))
            }
            let server = try await cancelWhenGracefulShutdown { try await reporting.start() }
            if let prepare { await prepare(server.handle) }
            return server
        } catch let error as PostgresError where error.underlying is CancellationError {
            logger.info("shutdown requested during start-up; PostgreSQL was stopped")
            return nil
        } catch is CancellationError {
            logger.info("shutdown requested during start-up")
            return nil
        }
    }
}

/// The seed scripts of a new cluster (`[postgres] seed`) and what runs them.
struct Seeding: Sendable {
    var files: [String]
    /// `psql` next to the server's `postgres`.
    var psql: String
    /// The config file that names the scripts, for messages.
    var configFile: String
    /// The cluster, removed when a script fails.
    var dataDirectory: String
    /// The account psql runs as when ampd runs as root (the one that runs PostgreSQL).
    var account: ProcessCredentials? = nil
    /// The project directory: a script must resolve (symlinks followed) to a file inside it,
    /// unless `seed_outside_project = true`.
    var projectBase: String
    var allowOutsideProject = false
    /// The start timeout, which covers seeding.
    var timeout: Duration

    /// Why `file` cannot be run as a seed script, or nil: it must exist, be a regular file
    /// (not `/dev/zero` or a pipe) and, unless allowed, resolve to a path inside the project.
    /// Nothing is read here: as root, reading is left to psql under the project's account.
    func problem(_ file: String) -> String? {
        func unreadable() -> String {
            "\(configFile): seed script \(file) cannot be read (\(String(cString: strerror(errno)))); fix the path in [postgres] seed"
        }
        var st = stat()
        guard stat(file, &st) == 0 else { return unreadable() }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            return "\(configFile): seed script \(file) is not a regular file; name SQL files in [postgres] seed"
        }
        if !allowOutsideProject {
            let resolved = realPath(file) ?? file
            let base = realPath(projectBase) ?? projectBase
            guard resolved.hasPrefix(base == "/" ? "/" : base + "/") else {
                return "\(configFile): seed script \(file) resolves to \(resolved), outside the project \(base); move it into the project, or set seed_outside_project = true in [postgres]"
            }
        }
        if account == nil, access(file, R_OK) != 0 { return unreadable() }
        return nil
    }
}

/// Performs what the ``NotifyStateMachine`` decides: sends notifications, logs, and runs
/// health checks against the attached server.
final class Supervisor: Sendable {
    private let machine: Mutex<NotifyStateMachine>
    private let server = Mutex<PostgresServer?>(nil)
    /// Signalled on every phase change, for a tick loop that is waiting for work.
    private let phaseChanged: AsyncStream<Void>
    private let phaseChangedSink: AsyncStream<Void>.Continuation
    private let notifier: SystemdNotifier
    private let board: StatusBoard
    private let logger: Logger
    let tickInterval: Duration

    init(notifier: SystemdNotifier, board: StatusBoard, logger: Logger) {
        let machine = NotifyStateMachine(watchdogInterval: notifier.watchdogInterval)
        self.machine = Mutex(machine)
        self.tickInterval = machine.tickInterval
        (phaseChanged, phaseChangedSink) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.notifier = notifier
        self.board = board
        self.logger = logger
        if let interval = notifier.watchdogInterval {
            logger.debug("watchdog enabled", metadata: ["interval": "\(interval)", "check_every": "\(tickInterval)"])
        }
    }

    /// Runs `body` with a supervisor whose ticks run beside it (a child task, cancelled when
    /// `body` returns).
    static func supervising(
        notifier: SystemdNotifier, board: StatusBoard, logger: Logger, _ body: (Supervisor) async throws -> Void
    ) async throws {
        let supervisor = Supervisor(notifier: notifier, board: board, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await supervisor.tickUntilCancelled() }
            defer { group.cancelAll() }
            try await body(supervisor)
        }
    }

    func attach(_ server: PostgresServer) { self.server.withLock { $0 = server } }

    /// Forgets the server (it exited): no health checks until the next ``attach(_:)``.
    func detach() { self.server.withLock { $0 = nil } }

    /// Feeds an event and performs the resulting actions, except health checks (those only
    /// come from ticks, see ``tickUntilCancelled()``).
    func handle(_ event: NotifyStateMachine.Event) {
        let actions = machine.withLock { $0.handle(event) }
        for action in actions { perform(action) }
        switch event {
        case .phase(let phase):
            board.update { Self.apply(phase, to: &$0) }
            phaseChangedSink.yield()
        case .healthChecked(let healthy, let reason):
            board.update {
                $0.healthy = healthy
                if !healthy { $0.lastError = reason }
                if healthy, $0.state == .ready { $0.phase = ServicePhase.ready(url: $0.url ?? "").statusText }
                if $0.state == .external, let server = $0.server {
                    $0.phase = healthy ? ServicePhase.external(server: server).statusText : ServicePhase.unreachableText(server, reason)
                }
            }
        case .degraded(let reason, _):
            board.update {
                $0.healthy = false
                $0.lastError = reason
                if $0.state == .ready { $0.phase = ServicePhase.unhealthyText(reason) }
            }
            phaseChangedSink.yield()
        case .tick: break
        }
    }

    /// The board's state and phase text for a phase (ready's details are set by
    /// ``StatusBoard/ready(_:)``).
    static func apply(_ phase: ServicePhase, to status: inout MetadbStatus) {
        status.state = phase.state
        status.phase = phase.statusText
        switch phase {
        case .checking, .initialisingCluster, .starting, .recovering, .seeding, .ready, .connecting, .external: break
        case .restarting(_, let reason):
            status.postmasterPID = nil
            status.healthy = false
            status.lastError = reason
        case .stopping: status.healthy = nil
        case .maintenance:
            status.postmasterPID = nil
            status.healthy = nil
        case .failed(let message): status.lastError = message
        }
    }

    private func perform(_ action: NotifyStateMachine.Action) {
        switch action {
        case .notify(let messages): notifier.send(messages)
        case .logNotice(let text): logger.notice("\(text)")
        case .logWarning(let text): logger.warning("\(text)")
        case .checkHealth: break
        }
    }

    /// Ticks until the task is cancelled; health checks run inline, bounded by the tick interval.
    /// In phases where ticks have nothing to do it waits for the next phase change instead.
    func tickUntilCancelled() async {
        var changes = phaseChanged.makeAsyncIterator()
        while !Task.isCancelled {
            if !machine.withLock({ $0.needsTicks }) {
                guard await changes.next() != nil else { return }
                continue
            }
            do { try await Task.sleep(for: tickInterval) } catch { return }
            let actions = machine.withLock { $0.handle(.tick) }
            for action in actions {
                guard action == .checkHealth else { perform(action); continue }
                guard let server = server.withLock({ $0 }) else { continue }
                let health = await server.checkHealth(timeout: tickInterval)
                switch health {
                case .healthy: handle(.healthChecked(healthy: true, reason: ""))
                case .degraded(let reason): handle(.degraded(reason: reason, checked: true))
                case .unhealthy(let reason): handle(.healthChecked(healthy: false, reason: reason))
                }
            }
        }
    }
}

extension ServicePhase {
    /// The phase for a step of ``PostgresBuilder/start()``: the library's progress events,
    /// mapped onto the service's one lifecycle.
    init(_ step: PostgresStartPhase) {
        switch step {
        case .checking: self = .checking
        case .initialisingCluster: self = .initialisingCluster
        case .starting: self = .starting
        case .recovering: self = .recovering
        }
    }
}
