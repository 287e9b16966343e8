#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPool
import AmpPostgres
import AmpProtocol
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

/// PgBouncer in front of the cluster (`[pool] enabled`), supervised by ampd itself rather
/// than by a unit of its own: it runs the same under `ampd run` (no systemd) and under
/// `amp@NAME` (in the unit's cgroup, stopped with it), it follows PostgreSQL's restarts and
/// maintenance without unit dependencies, and its state and figures are in the status ampd
/// already serves. A failed PgBouncer is restarted (1 s, doubling to 30 s) and named in the
/// status; PostgreSQL keeps serving on its own socket meanwhile.
final class PoolSupervisor: Sendable {
    /// `.amp/pool`.
    let directory: String
    /// The pool's TCP address and port (`[pool] listen`), or nil: the socket only.
    let listen: (host: String, port: Int)?
    let tls: (certificate: String, key: String)?
    let plan: PoolPlan
    let executable: String
    let account: ProcessCredentials?
    let board: StatusBoard
    let logger: Logger
    /// The running PgBouncer's configuration (nil while it is not running).
    private let running = Mutex<PgBouncerConfiguration?>(nil)
    /// The databases (by oid) that have the lookup function.
    private let prepared = Mutex<Set<String>>([])
    /// Time between looks at the figures and at new databases.
    static let tick: Duration = .seconds(5)

    init(directory: String, listen: (host: String, port: Int)?, tls: (certificate: String, key: String)?, plan: PoolPlan, executable: String,
         account: ProcessCredentials?, board: StatusBoard, logger: Logger) {
        self.directory = directory
        self.listen = listen
        self.tls = tls
        self.plan = plan
        self.executable = executable
        self.account = account
        self.board = board
        self.logger = logger
    }

    /// `pgbouncer` on `PATH`, else in `/usr/sbin` (Debian's package), else nil.
    static func locate(environment: [String: String]) -> String? {
        findProgram("pgbouncer", searchPath: environment["PATH"], fallbacks: ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"])
    }

    /// The configuration for the running server (its socket directory and port).
    func configuration(for handle: PostgresHandle) -> PgBouncerConfiguration {
        PgBouncerConfiguration(directory: directory, socketDirectory: handle.socketDirectory, postgresPort: handle.port,
                               port: listen?.port ?? PgBouncerConfiguration.defaultPort(postgresPort: handle.port), listenHost: listen?.host, tls: tls, plan: plan)
    }

    /// Writes the configuration, hba and user files into `.amp/pool` (0600, the cluster's account).
    func writeFiles(_ c: PgBouncerConfiguration) throws(DaemonError) {
        do { try makeDirectories(c.directory, mode: 0o700) } catch {
            throw DaemonError(.cannotCreate, "cannot create \(c.directory) for the pool: \(error); check the permissions of its parent")
        }
        if let account { _ = chown(c.directory, account.uid, account.gid) }
        for (file, text) in [(c.configurationFile, c.ini), (c.hbaFile, c.hba), (c.usersFile, c.users)] {
            do { try writeFileAtomically(file, Array(text.utf8), mode: 0o600) } catch {
                throw DaemonError(.cannotCreate, "cannot write \(file): \(error)")
            }
            if let account { _ = chown(file, account.uid, account.gid) }
        }
    }

    private func publish(_ change: (inout MetadbPool) -> Void) {
        let plan = plan, listen = listen
        board.update {
            var pool = $0.pool ?? MetadbPool(state: "starting", mode: plan.mode.rawValue, size: plan.serverConnections, maxClients: plan.maxClients,
                                             socket: "", listen: listen.map { ListenAddress.address(host: $0.host == "*" ? "0.0.0.0" : $0.host, port: $0.port).description })
            change(&pool)
            $0.pool = pool
        }
    }

    /// Runs until cancelled.
    func supervise() async {
        publish { $0.state = "waiting for PostgreSQL" }
        var delay = Duration.seconds(1)
        var restarts = 0
        while !Task.isCancelled {
            guard let handle = board.handle else {
                if (try? await Task.sleep(for: .milliseconds(300))) == nil { return }
                continue
            }
            let began = ContinuousClock.now
            let problem = await run(handle)
            if Task.isCancelled { return }
            if ContinuousClock.now - began > .seconds(60) { delay = .seconds(1) }
            restarts += 1
            let wait = "\(delay.components.seconds) s"
            logger.error("pool: \(problem); restarting PgBouncer in \(wait) (PostgreSQL keeps serving on its own socket)")
            publish {
                $0.state = "failed: \(problem); restarting in \(wait)"
                $0.pid = nil
                $0.restarts = restarts
            }
            running.withLock { $0 = nil }
            if (try? await Task.sleep(for: delay)) == nil { return }
            delay = min(delay * 2, .seconds(30))
        }
    }

    /// One run of PgBouncer; returns why it ended.
    private func run(_ handle: PostgresHandle) async -> String {
        let configuration = configuration(for: handle)
        do throws(DaemonError) { try writeFiles(configuration) } catch { return error.message }
        if let problem = await prepareDatabases(handle, roles: true) { return problem }
        let recent = RecentLines(capacity: 5)
        let log = logger
        let environment = ["PATH": "/usr/sbin:/usr/bin:/bin", "LC_ALL": "C", "USER": account?.name ?? handle.user, "LOGNAME": account?.name ?? handle.user]
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(SpawnConfiguration(
                executable: executable, arguments: [configuration.configurationFile], environment: environment,
                workingDirectory: configuration.directory,
                output: .lines { lines in
                    for line in lines where !line.isEmpty {
                        let entry = PgBouncerLogLine(line)
                        switch entry.level {
                        case .debug: log.debug("pgbouncer: \(entry.text)")
                        case .info: log.info("pgbouncer: \(entry.text)")
                        case .warning: log.warning("pgbouncer: \(entry.text)")
                        case .error:
                            log.error("pgbouncer: \(entry.text)")
                            recent.append([entry.text])
                        }
                    }
                },
                deathSignal: SIGTERM, newProcessGroup: true, credentials: account))
        } catch {
            return "cannot start \(executable): \(error)"
        }
        publish {
            $0.state = "starting"
            $0.pid = Int(child.pid)
            $0.socket = configuration.socketPath
            $0.port = configuration.port
        }
        var announced = false
        var sinceDatabases = ContinuousClock.now
        var wait = Duration.milliseconds(100)
        while true {
            if Task.isCancelled {
                running.withLock { $0 = nil }
                await stop(child)
                return "stopped"
            }
            if let status = await child.wait(timeout: wait) {
                await child.waitForOutput(timeout: .seconds(1))
                return "PgBouncer ended (\(status))" + (recent.lines.last.map { ": \($0)" } ?? "")
            }
            let answer = await showPools(configuration)
            switch answer {
            case .success(let f):
                running.withLock { $0 = configuration }
                publish {
                    $0.state = "running"
                    $0.clientsActive = f.clientsActive
                    $0.clientsWaiting = f.clientsWaiting
                    $0.serversActive = f.serversActive
                    $0.serversIdle = f.serversIdle
                    $0.maxWaitSeconds = f.maxWaitSeconds
                }
                if !announced {
                    announced = true
                    let c = configuration, tcp = c.listenHost.map { " and \($0):\(c.port)" } ?? ""
                    logger.info("pool: PgBouncer (PID \(child.pid), \(c.plan.mode.rawValue) pooling, \(c.plan.serverConnections) server connections per database, \(c.plan.maxClients) clients at most) at unix:\(c.socketPath)\(tcp)")
                }
                wait = Self.tick
            case .failure(let e):
                // Not up yet, or too busy to answer the admin console: the next tick tells.
                if announced { logger.debug("pool: SHOW POOLS: \(e.message)") }
                wait = announced ? Self.tick : .milliseconds(200)
            }
            if ContinuousClock.now - sinceDatabases > .seconds(60), let current = board.handle {
                sinceDatabases = ContinuousClock.now
                if let problem = await prepareDatabases(current, roles: false) { logger.warning("pool: \(problem)") }
            }
        }
    }

    /// SIGINT (PgBouncer's safe shutdown: transactions finish), then after 5 s SIGTERM (its
    /// fast exit), then SIGKILL.
    private func stop(_ child: ChildProcess) async {
        child.signal(SIGINT)
        if await child.wait(timeout: .seconds(5)) != nil { return }
        child.signal(SIGTERM)
        if await child.wait(timeout: .seconds(5)) != nil { return }
        child.signal(SIGKILL, group: true)
        _ = await child.wait()
    }

    /// `SHOW POOLS` now (for a scrape), or nil when PgBouncer is not running or does not answer.
    func currentFigures() async -> PoolFigures? {
        guard let configuration = running.withLock({ $0 }) else { return nil }
        return try? await showPools(configuration).get()
    }

    /// `SHOW POOLS` on the admin console, over the pool's socket.
    private func showPools(_ configuration: PgBouncerConfiguration) async -> Result<PoolFigures, LibPQError> {
        let conninfo = LibPQ.socketConninfo(directory: configuration.socketDirectory, port: configuration.port, database: "pgbouncer",
                                            user: PoolAuth.adminUser, connectTimeout: 2)
        return await runOnThread(name: "amp-pool") {
            Result { () throws(LibPQError) in
                let table = try LibPQConnection(conninfo).table("SHOW POOLS")
                guard let f = PoolFigures(columns: table.columns, rows: table.rows) else {
                    throw LibPQError(message: "SHOW POOLS lacks a column amp reads (\(table.columns.joined(separator: ", ")))")
                }
                return f
            }
        }
    }

    /// The roles (with `roles`) and, in every database that takes connections and lacks it,
    /// the lookup function (``PoolAuth``); nil, or why not. A standby (read-only) gets them
    /// from its primary.
    func prepareDatabases(_ handle: PostgresHandle, roles: Bool) async -> String? {
        let done = prepared.withLock { $0 }
        let socket = handle.socketDirectory, port = handle.port, user = handle.user
        let result = await runOnThread(name: "amp-pool") { () -> Result<[String], LibPQError> in
            Result { () throws(LibPQError) in
                func conninfo(_ database: String) -> String {
                    LibPQ.socketConninfo(directory: socket, port: port, database: database, user: user, application: "ampd", connectTimeout: 5)
                }
                let main = try LibPQConnection(conninfo("postgres"))
                let standby = try main.rows("SELECT pg_catalog.pg_is_in_recovery()").first?.first == "t"
                if standby { return [] }
                if roles { _ = try main.rows(PoolAuth.roles) }
                var added: [String] = []
                for row in try main.rows(PoolAuth.connectableDatabases) {
                    guard row.count == 2, let oid = row[0], let name = row[1], !done.contains(oid) else { continue }
                    _ = try LibPQConnection(conninfo(name)).rows(PoolAuth.function)
                    added.append(oid)
                }
                return added
            }
        }
        switch result {
        case .success(let added):
            prepared.withLock { $0.formUnion(added) }
            return nil
        case .failure(let e):
            return "cannot prepare the pool's lookup function (\(PoolAuth.lookupFunction)): \(e.message)"
        }
    }
}

/// The pool as a service of the group: listed after PostgreSQL, so that it stops first.
struct PoolService: Service {
    let supervisor: PoolSupervisor

    func run() async throws {
        await cancelWhenGracefulShutdown { await supervisor.supervise() }
    }
}
