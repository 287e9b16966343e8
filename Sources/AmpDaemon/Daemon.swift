#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpLogging
import AmpPool
import AmpPostgres
import AmpProtocol
import AmpRegistry
import AmpSystemd
import CSocket
import ChildProcess
import Logging
import ServiceLifecycle
import Varlink
import SystemSupport
import ThreadSupport

/// What `ampd run` does, step by step; every failure ends in one clear line and an
/// ``ExitStatus``.
enum Daemon {
    static func run(_ command: RunCommand) async -> ExitStatus {
        // A thread per varlink connection: without a bound, glibc gives threads arenas of
        // their own and keeps their high-water marks; two arenas keep bursts from ratcheting
        // the resident size up (measured in the varlink abuse test).
        amp_limit_malloc_arenas(2)
        raiseDescriptorLimit()
        let environment = processEnvironment()
        let inputs = StartupPlan.Inputs(
            ampDirFlag: command.ampDir, instance: command.instance, commandLine: command.server, environment: environment, workingDirectory: workingDirectory())
        let level = parseLogLevel(command.logLevel)
        // Where the log goes needs the amp dir and the name; a bad --instance is logged after.
        let locating = Result { () throws(DaemonError) in try StartupPlan.locate(inputs) }
        let located = try? locating.get()
        let journal: Bool
        switch command.logTarget {
        case "journal": journal = true
        case "stderr": journal = false
        default: journal = isStandardErrorJournal(environment: environment)
        }
        bootstrapLogging(journal: journal, level: level ?? .info, located: located, environment: environment)
        let logger = Logger(label: "ampd")
        let notifier = SystemdNotifier(environment: environment)
        func fail(_ code: ExitStatus, _ message: String, details: [String] = []) -> ExitStatus {
            failed(code, message, details)
        }
        func failed(_ code: ExitStatus, _ message: String, _ details: [String]) -> ExitStatus {
            logger.error("\(message)")
            for d in details { logger.error("  \(d)") }
            notifier.failed(status: "failed: \(message)", errno: code.errnoValue)
            return code
        }
        guard level != nil else {
            return fail(.usage, "--log-level \(command.logLevel): unknown level; use trace, debug, info, notice, warning, error or critical")
        }
        guard ["auto", "journal", "stderr"].contains(command.logTarget) else {
            return fail(.usage, "--log-target \(command.logTarget): unknown target; use auto, journal or stderr")
        }
        let plan: StartupPlan
        do throws(DaemonError) {
            let located = try locating.get()
            logger.debug("amp dir \(located.ampDir.path) (from \(located.ampDir.source.rawValue))")
            plan = try await StartupPlan.make(inputs, located: located) { logger.warning("\($0)") }
        } catch {
            return fail(error.code, error.message, details: error.details)
        }
        switch plan.target {
        case .external(let url):
            return await runExternal(url: url, plan: plan, environment: environment, journal: journal, notifier: notifier, logger: logger, fail: failed)
        case .local(let server):
            do throws(DaemonError) {
                return try await runLocal(plan, server: server, environment: environment, journal: journal, notifier: notifier, logger: logger, fail: failed)
            } catch {
                return fail(error.code, error.message, details: error.details)
            }
        }
    }

    /// Sends log lines to the journal (with the project's fields) or to standard error.
    static func bootstrapLogging(journal: Bool, level: Logger.Level, located: StartupPlan.Located?, environment: [String: String]) {
        if journal {
            let fields = located.map { [("AMP_PROJECT", $0.projectName), ("AMP_DIR", $0.ampDir.path)] } ?? []
            LoggingSystem.bootstrap { label in
                JournalLogHandler(label: label, level: level, identifier: "ampd", fields: fields)
            }
        } else {
            let colour = shouldUseColour(environment: environment)
            LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level, colour: colour) }
        }
    }

    /// Runs the local cluster the plan describes: the amp dir's layout and lock, an interrupted
    /// operation finished or rolled back, the account, the TCP listener, then the services.
    static func runLocal(
        _ plan: StartupPlan, server plannedServer: ServerSettings, environment: [String: String], journal: Bool, notifier: SystemdNotifier, logger: Logger,
        fail failed: (ExitStatus, String, [String]) -> ExitStatus
    ) async throws(DaemonError) -> ExitStatus {
        let ampDir = plan.ampDir, projectName = plan.projectName, settings = plan.settings, layers = plan.layers
        var server = plannedServer
        for note in server.notes { logger.notice("\(note)") }
        let (lock, account) = try await claim(plan, logger: logger)
        let tcp = try await TCPListener.prepare(settings, ampDir: ampDir, project: projectName, environment: environment, account: account, logger: logger)

        if let tcp { server.addListener(tcp.parameters, layers: layers) }
        let builder = makeBuilder(plan, server: server, account: account, logger: logger)

        // The varlink socket listens before PostgreSQL starts, so `ampctl status` sees the start.
        let restarts = countStart(environment: environment)
        let maintenance = MaintenanceQueue()
        let sessions = LibPQSessions()
        let board = StatusBoard(MetadbStatus(
            state: ServicePhase.checking.state, phase: ServicePhase.checking.statusText, project: projectName, ampdPID: Int(getpid()),
            ampDir: ampDir.path, dataDir: ampDir.metadb, restarts: restarts))
        if let tcp {
            board.update {
                $0.listen = tcp.display
                $0.tls = tcp.tls
            }
            logger.info("PostgreSQL also listens on TCP \(tcp.display)\(tcp.tls ? " (TLS)" : ""), SCRAM password required")
        }
        let pooling = try await preparePool(plan, server: server, tcp: tcp, account: account, environment: environment, board: board, logger: logger)
        let testDatabases = TestDatabasePool(board: board, sessions: sessions, logger: logger)
        let statistics = try? WorkerThread(name: "amp-statistics")
        defer { statistics?.stop() }
        var backups: BackupContext? = nil
        if settings.backupArchive {
            let archive = BackupArchive(directory: settings.backupTarget ?? ampDir.path + "/backup", owner: account)
            var pgBackRest = server.pgBackRest
            pgBackRest?.account = account
            if let pgBackRest {
                // archive_command names this file: it is there before PostgreSQL starts.
                do throws(BackupError) { try pgBackRest.writeConfiguration() } catch { throw DaemonError(.cannotCreate, error.message) }
            }
            let coordinator = BackupCoordinator(
                archive: archive, archiver: WALArchiver(archive: archive, binaries: server.binaries, account: account), board: board, logger: logger,
                policy: BackupPolicy(synchronous: settings.backupSynchronous, flushEachWrite: settings.backupSynchronous, interval: Double(settings.backupInterval.components.seconds),
                                     window: Double(settings.backupWindow.components.seconds), maxBytes: settings.backupMaxSize.bytes,
                                     major: server.version.majorNumber),
                session: sessions.slot(), pgBackRest: pgBackRest)
            backups = BackupContext(coordinator: coordinator, dataDirectory: ampDir.metadb, binaries: server.binaries, version: server.version,
                                    account: account, queue: maintenance, timeout: .seconds(24 * 3600))
        } else {
            board.update { $0.archive = "off" }
        }
        let metrics = MetricsCollector(board: board, session: sessions.slot(), exporterNames: settings.metricsExporterNames, pool: pooling?.supervisor)
        let history = HistorySampler(board: board, session: sessions.slot())
        let metricsListener = try settings.metricsListen.map { address throws(DaemonError) in
            try MetricsListener(address, source: layers.source(of: .metricsListen) ?? "[metrics] listen", collector: metrics, logger: logger)
        }
        if let metricsListener { logger.info("metrics for Prometheus at http://\(metricsListener.display)/metrics") }
        let varlink = try makeVarlinkServer(
            name: projectName, environment: environment, board: board, logger: logger,
            snapshots: SnapshotContext(store: ClusterSnapshots(directory: ampDir.path + "/snapshots"), dataDirectory: ampDir.metadb,
                                       projectBase: ampDir.base, queue: maintenance, seedsConfigured: !settings.seed.isEmpty),
            backups: backups, testDatabases: testDatabases, sessions: sessions, statistics: statistics, metrics: metrics, history: history)
        logger.info("varlink API at unix:\(varlink.path)")

        let extensions = server.createExtensions, moduleExtensions = server.moduleExtensions
        var service = AmpdService(builder: builder, notifier: notifier, board: board, logger: logger) { handle, elapsed, created in
            if created, !extensions.isEmpty { await Self.createExtensions(extensions, handle: handle, logger: logger) }
            if !moduleExtensions.isEmpty { await Self.createExtensions(moduleExtensions, handle: handle, logger: logger) }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let rounded = (seconds * 1000).rounded() / 1000
            if !journal { printLine("ready in \(rounded)s: \(handle.url) — connect with: psql '\(handle.url)'") }
            logger.info("PostgreSQL \(handle.serverVersion) ready in \(rounded)s: \(handle.url)", metadata: ["pid": "\(handle.pid)"])
        }
        service.maintenance = maintenance
        if let archive = backups?.archive {
            let metadb = ampDir.metadb
            if let engine = backups?.coordinator.pgBackRest {
                let marker = engine.backedUpFile
                service.refuseNewCluster = {
                    guard access(metadb + "/PG_VERSION", F_OK) != 0, access(marker, F_OK) == 0 else { return nil }
                    return "the cluster \(metadb) is gone, but the pgBackRest repository (stanza \(engine.stanza)) holds it: bring it back with "
                        + "`ampctl restore --to latest` (ampd makes no new, empty cluster over it; to start afresh instead, remove \(marker) "
                        + "and use another stanza)"
                }
            } else {
                service.refuseNewCluster = {
                    guard access(metadb + "/PG_VERSION", F_OK) != 0, access(archive.systemIdentifierFile, F_OK) == 0, !archive.backups().isEmpty else { return nil }
                    return "the cluster \(metadb) is gone, but the archive \(archive.directory) holds it: bring it back with `ampctl restore --to latest` "
                        + "(ampd makes no new, empty cluster over it; to start afresh instead, move the archive away)"
                }
            }
        }
        if let tcp {
            service.prepare = { handle in await tcp.applyPassword(to: handle, logger: logger) }
        } else if let secrets = pooling?.secrets {
            service.prepare = { handle in await secrets.applyPassword(to: handle, logger: logger) }
        }
        if !settings.seed.isEmpty {
            service.seeding = Seeding(
                files: settings.seed, psql: server.binaries.path("psql"), configFile: ampDir.configFile, dataDirectory: ampDir.metadb,
                account: account, projectBase: ampDir.base, allowOutsideProject: settings.seedOutsideProject, timeout: settings.startTimeout)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            // Dependency order: started first, stopped last.
            .init(service: VarlinkService(server: varlink, board: board), serviceName: "varlink"),
            .init(service: TestDatabasePoolService(pool: testDatabases), serviceName: "testdb-pool"),
        ]
        if let metricsListener { services.append(.init(service: MetricsService(listener: metricsListener), serviceName: "metrics")) }
        services.append(.init(service: HistoryService(sampler: history), serviceName: "history"))
        // The archiver stops after PostgreSQL: its receiver takes the shutdown's last WAL.
        if let backups { services.append(.init(service: ArchiverService(coordinator: backups.coordinator), serviceName: "archiver")) }
        let group = ServiceGroup(configuration: .init(
            services: services + [
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "postgres"),
            ] + (pooling.map { [.init(service: PoolService(supervisor: $0.supervisor), serviceName: "pool")] } ?? []),
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        let code = await run(group, environment: environment, logger: logger, fail: failed)
        withExtendedLifetime(lock) {}
        return code
    }

    /// The pool (`[pool] enabled`): PgBouncer found, its plan decided, its TCP port chosen and
    /// free, and (when it listens on TCP without `[postgres] listen`) the password and
    /// certificate; nil when the pool is off.
    static func preparePool(
        _ plan: StartupPlan, server: ServerSettings, tcp: TCPListener?, account: ProcessCredentials?, environment: [String: String], board: StatusBoard, logger: Logger
    ) async throws(DaemonError) -> (supervisor: PoolSupervisor, secrets: TCPListener.Secrets?)? {
        let settings = plan.settings, ampDir = plan.ampDir
        guard settings.poolEnabled else { return nil }
        guard let executable = PoolSupervisor.locate(environment: environment) else {
            throw DaemonError(.config, "[pool] enabled = true needs PgBouncer, which is not installed: apt install pgbouncer, or set enabled = false in [pool] of \(ampDir.configFile)")
        }
        if let problem = PgBouncerConfiguration.pathProblem(ampDir.path) { throw DaemonError(.config, "[pool] enabled: \(problem)") }
        var limit = rlimit()
        let descriptors = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(min(limit.rlim_cur, 1 << 20)) : 1024
        let poolPlan: PoolPlan
        switch PoolPlan.decide(mode: settings.poolMode, size: settings.poolSize, maxClients: settings.poolMaxClients,
                               maxConnections: server.maxConnections, cpus: server.cpus, descriptorLimit: descriptors) {
        case .success(let p): poolPlan = p
        case .failure(let problem): throw DaemonError(.config, problem.message)
        }
        for note in poolPlan.notes { logger.warning("\(note)") }
        var listen: (host: String, port: Int)?
        var secrets: TCPListener.Secrets?
        var tls: (certificate: String, key: String)?
        if let tcp, let c = tcp.certificate, let k = tcp.key { tls = (c, k) }
        if let address = settings.poolListen {
            let directory = ampDir.path + "/network"
            do { try makeDirectories(directory, mode: 0o700) } catch {
                throw DaemonError(.cannotCreate, "cannot create \(directory): \(error); check the permissions of \(ampDir.path)")
            }
            if let account { _ = chown(directory, account.uid, account.gid) }
            switch address {
            case .address(let h, let p): listen = (h, p)
            case .auto: listen = ("127.0.0.1", try TCPListener.autoPort(directory + "/pool-port"))
            }
            if let (host, port) = listen, let problem = TCPListener.bindProblem(host: host, port: port) {
                let kept = address == .auto ? " (kept for this project in \(directory)/pool-port: delete that file to have another one chosen)" : ""
                throw DaemonError(.unavailable, "[pool] listen: cannot listen on \(ListenAddress.address(host: host, port: port))\(kept): \(problem)")
            }
            board.update { $0.tls = settings.tls }
            if tcp == nil {
                let s = try await TCPListener.Secrets.prepare(settings, directory: directory, host: listen?.host ?? "127.0.0.1", project: plan.projectName,
                                                              environment: environment, account: account, logger: logger)
                secrets = s
                if let c = s.certificate, let k = s.key { tls = (c, k) }
            }
        }
        let supervisor = PoolSupervisor(directory: ampDir.path + "/pool", listen: listen, tls: settings.tls ? tls : nil, plan: poolPlan, executable: executable,
                                        account: account, board: board, logger: logger)
        return (supervisor, secrets)
    }

    /// Takes the amp dir for this process: its layout, its lock (held for as long as the
    /// returned value lives), an interrupted restore, reset or upgrade finished or rolled back
    /// (what cannot be decided stays, listed by `ampctl du` and `gc`), and the account
    /// PostgreSQL runs as.
    static func claim(_ plan: StartupPlan, logger: Logger) async throws(DaemonError) -> (AmpDirLock, ProcessCredentials?) {
        let ampDir = plan.ampDir
        do {
            try ampDir.ensureLayout()
        } catch {
            throw DaemonError(ExitStatus(error), error.message)
        }
        let lock: AmpDirLock
        do {
            lock = try AmpDirLock.acquire(ampDir.lockFile)
        } catch .held(let pid) {
            let who = pid.map { "ampd (PID \($0))" } ?? "another ampd"
            throw DaemonError(
                .tempFail,
                "amp dir \(ampDir.path) is in use by \(who); stop it first (`kill \(pid.map(String.init) ?? "<pid>")`, or `systemctl --user stop amp@\(plan.projectName)`) or use another amp dir")
        } catch {
            guard case .io(let message) = error else { throw DaemonError(.failure, "cannot lock \(ampDir.lockFile)") }
            throw DaemonError(.cannotCreate, "\(message); check the permissions of \(ampDir.path)")
        }
        _ = await InterruptedOperations.recover(
            dataDirectory: ampDir.metadb, rollbackDirectory: ampDir.rollbackDirectory, stopTimeout: plan.settings.stopTimeout, logger: logger)
        do {
            return (lock, try postgresAccount(settings: plan.settings, ampDir: ampDir, logger: logger))
        } catch {
            throw DaemonError(.noPermission, error.message)
        }
    }

    /// The cluster's builder: the plan's binaries, settings and parameters.
    static func makeBuilder(_ plan: StartupPlan, server: ServerSettings, account: ProcessCredentials?, logger: Logger) -> PostgresBuilder {
        let settings = plan.settings
        return PostgresBuilder(dataDirectory: plan.ampDir.metadb)
            .locale(settings.locale)
            .encoding(settings.encoding)
            .binaries(server.binaries, version: server.version)
            .developmentDefaults(false)
            .socketDirectory(settings.socketDir)
            .user(account)
            .startTimeout(settings.startTimeout)
            .stopTimeout(settings.stopTimeout)
            .logger(logger)
            .templateCache(directory: plan.cacheDirectory)
            .with(initdbArguments: server.initdbArguments, parameters: server.parameters)
    }

    /// Runs the service group to its end: the exit status, and the log line of a failure.
    static func run(_ group: ServiceGroup, environment: [String: String], logger: Logger,
                    fail: (ExitStatus, String, [String]) -> ExitStatus) async -> ExitStatus {
        do {
            try await group.run()
        } catch let error as PostgresError {
            return fail(ExitStatus(error), error.message, error.details)
        } catch let error as DaemonError {
            return fail(error.code, error.message, [])
        } catch {
            return fail(.failure, "\(error)", [])
        }
        // A clean stop is not a restart: the next start counts from zero.
        if let dir = environment["RUNTIME_DIRECTORY"]?.split(separator: ":").first { unlink(String(dir) + "/starts") }
        logger.info("stopped")
        return .success
    }

    /// `ampd run` for a project that uses an external server (`[postgres] url`): the varlink
    /// API and the ``ExternalService``, no local cluster. The password comes from the unit's
    /// credential (`$CREDENTIALS_DIRECTORY/amp-pgpass`), else amp's credential file, else
    /// libpq's own places (`~/.pgpass`, `pg_service.conf`).
    static func runExternal(
        url: String, plan: StartupPlan, environment: [String: String], journal: Bool,
        notifier: SystemdNotifier, logger: Logger, fail: (ExitStatus, String, [String]) -> ExitStatus
    ) async -> ExitStatus {
        let settings = plan.settings, ampDir = plan.ampDir, projectName = plan.projectName
        var passFile: String?
        var passwordSource = "no password file of amp's: libpq looks in ~/.pgpass and pg_service.conf"
        if let credentials = environment["CREDENTIALS_DIRECTORY"], access(credentials + "/" + AmpSecrets.credentialName, R_OK) == 0 {
            passFile = credentials + "/" + AmpSecrets.credentialName
            passwordSource = "the password comes from the systemd credential \(AmpSecrets.credentialName)"
        } else {
            switch AmpSecrets.existingExternalPassFile(project: projectName, environment: environment) {
            case .failure(let problem): return fail(.config, "the password file of the external server \(problem.message)", [])
            case .success(nil): break
            case .success(let file?):
                passFile = file
                passwordSource = "the password comes from \(file)"
            }
        }
        logger.info("\(passwordSource)")
        let server: ExternalServer
        do {
            server = try ExternalServer(url: url, passFile: passFile)
        } catch {
            return fail(.config, "\(ampDir.configFile): postgres.url: \(error.message); fix the URL", [])
        }
        // No amp dir lock: there is no local cluster to guard here, and `ampctl push`/`pull`
        // take the lock to start the local one while this ampd serves the external server.
        let board = StatusBoard(MetadbStatus(
            state: .starting, phase: ServicePhase.connecting(server: server.display).statusText, project: projectName, ampdPID: Int(getpid()),
            ampDir: ampDir.path, dataDir: "", restarts: countStart(environment: environment)))
        board.update {
            $0.server = server.display
            $0.tls = server.usesTLS
        }
        let statistics = try? WorkerThread(name: "amp-statistics")
        defer { statistics?.stop() }
        let varlink: VarlinkServer
        do {
            varlink = try makeVarlinkServer(name: projectName, environment: environment, board: board, logger: logger, statistics: statistics, external: server)
        } catch {
            return fail(error.code, error.message, [])
        }
        logger.info("varlink API at unix:\(varlink.path)")
        var service = ExternalService(server: server, notifier: notifier, board: board, logger: logger, startTimeout: settings.startTimeout)
        service.printsReadyLine = !journal
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: VarlinkService(server: varlink, board: board), serviceName: "varlink"),
                .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "external"),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        return await run(group, environment: environment, logger: logger, fail: fail)
    }

    /// Binds the `io.amp.Metadb` socket at `RUNTIME/amp/NAME/io.amp.Metadb` (directories 0700).
    static func makeVarlinkServer(
        name: String, environment: [String: String], board: StatusBoard, logger: Logger, snapshots: SnapshotContext? = nil, backups: BackupContext? = nil,
        testDatabases: TestDatabasePool? = nil, sessions: LibPQSessions = LibPQSessions(), statistics: WorkerThread? = nil, external: ExternalServer? = nil,
        metrics: MetricsCollector? = nil, history: HistorySampler? = nil
    ) throws(DaemonError) -> VarlinkServer {
        let runtime = Metadb.runtimeDirectory(environment: environment)
        let path = Metadb.socketPath(runtimeDirectory: runtime, name: name)
        for dir in [runtime, runtime + "/amp", runtime + "/amp/" + name] where access(dir, F_OK) != 0 {
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw DaemonError(.cannotCreate, "cannot create \(dir) for the varlink socket: \(String(cString: strerror(errno))); set XDG_RUNTIME_DIR to a directory of yours")
            }
        }
        // A directory another user made (a planted /tmp/amp-UID) would let them swap the socket.
        if let problem = Metadb.socketDirectoryProblem(runtimeDirectory: runtime, name: name) {
            throw DaemonError(
                .noPermission,
                "refusing to put the varlink socket below \(runtime): \(problem); another user may have made it: remove it, or set XDG_RUNTIME_DIR to a directory of yours with mode 0700")
        }
        let service: VarlinkServiceDescription
        do {
            service = try Metadb.service(version: ampVersion)
        } catch {
            throw DaemonError(.failure, "io.amp.Metadb interface description: \(error)")
        }
        var operations = MetadbOperations(board: board, logger: logger)
        operations.snapshots = snapshots
        operations.backups = backups
        operations.testDatabases = testDatabases
        operations.sessions = sessions
        operations.readOnlySession = sessions.slot()
        operations.external = external
        operations.statistics = statistics
        operations.metrics = metrics ?? MetricsCollector(board: board, session: sessions.slot())
        operations.history = history
        let handler = MetadbHandler(operations: operations)
        do {
            return try VarlinkServer(path: path, service: service, handler: handler, log: { message in logger.debug("\(message)") },
                                    warn: { message in logger.warning("\(message)") })
        } catch {
            if error.message.contains("another process") {
                throw DaemonError(
                    .tempFail,
                    "\(path) is served by another ampd: a project named \(name) already runs; give this one another name (`ampctl init --name OTHER`)")
            }
            throw DaemonError(.cannotCreate, "\(error); check \(runtime)")
        }
    }

    /// Creates the baseline extensions in the default database of a new cluster (on a thread
    /// of its own, awaited; a failure is logged, never fatal).
    static func createExtensions(_ names: [String], handle: PostgresHandle, logger: Logger) async {
        let socket = handle.socketDirectory + "/.s.PGSQL.\(handle.port)"
        await runOnThread(name: "amp-extensions") {
            for name in names {
                let sql = "CREATE EXTENSION IF NOT EXISTS \(LibPQ.quoteIdentifier(name))"
                switch WireProbe.probe(socketPath: socket, user: handle.user, database: handle.database, query: sql, timeout: .seconds(30)) {
                case .ok: logger.info("created extension \(name) in \(handle.database)")
                case .rejected(let code, let message): logger.warning("could not create extension \(name): \(message) (SQLSTATE \(code))")
                default: logger.warning("could not create extension \(name): no answer from PostgreSQL")
                }
            }
        }
    }

    /// Counts this start in `$RUNTIME_DIRECTORY/starts` (systemd keeps that directory across
    /// restarts of the unit and removes it on stop); returns the restarts before this one.
    static func countStart(environment: [String: String]) -> Int {
        guard let dir = environment["RUNTIME_DIRECTORY"]?.split(separator: ":").first.map(String.init), dir.hasPrefix("/") else { return 0 }
        let file = dir + "/starts"
        let before = FileContents.text(file).flatMap { Int($0.filter(\.isNumber)) } ?? 0
        if let f = fopen(file, "w") {
            fputs("\(before + 1)\n", f)
            fclose(f)
        }
        return before
    }

    /// The account PostgreSQL runs as. Not root: this process's (or an error if another is
    /// asked for). Root: the configured one, else the owner of the project directory when that
    /// is not root, else `postgres`.
    static func postgresAccount(settings: AmpSettings, ampDir: AmpDirectory, logger: Logger) throws(ConfigError) -> ProcessCredentials? {
        guard geteuid() == 0 else {
            if let name = settings.postgresUser, ProcessCredentials.lookup(uid: geteuid())?.name != name {
                throw ConfigError(.invalidValue, "PostgreSQL can run as \(name) only when ampd runs as root; drop the postgres user setting")
            }
            return nil
        }
        let account: ProcessCredentials?
        if let name = settings.postgresUser {
            guard let found = ProcessCredentials.lookup(user: name) else {
                throw ConfigError(.invalidValue, "postgres user \(name) does not exist; create it (`useradd --system \(name)`) or choose another")
            }
            account = found
        } else {
            var st = stat()
            let ownerUID: uid_t? = stat(ampDir.base, &st) == 0 ? st.st_uid : nil
            if let ownerUID, ownerUID != 0, let owner = ProcessCredentials.lookup(uid: ownerUID) {
                account = owner
            } else {
                account = ProcessCredentials.lookup(user: "postgres")
            }
        }
        guard let account, account.uid != 0 else {
            throw ConfigError(
                .invalidValue,
                "ampd runs as root and PostgreSQL refuses root, but no unprivileged account was found; pass --postgres-user USER (or install postgresql, which creates the postgres account)")
        }
        logger.notice("running as root: PostgreSQL runs as \(account.name) (UID \(account.uid))")
        // What ampd made in the project belongs to the project, not to root: the account must
        // reach the data directory, and the owner's own `ampd run` must be able to take the
        // lock and read the layout afterwards. Only entries that root owns are changed, never
        // through a symbolic link.
        for path in [ampDir.path] + ampDir.subdirectories + [ampDir.lockFile, ampDir.layoutFile] {
            var st = stat()
            if lstat(path, &st) == 0, st.st_uid == 0, (st.st_mode & S_IFMT) != S_IFLNK { _ = lchown(path, account.uid, account.gid) }
        }
        return account
    }
}

extension PostgresBuilder {
    func with(initdbArguments: [String], parameters: [(String, String)]) -> PostgresBuilder {
        var b = self
        for a in initdbArguments { b = b.initdbArgument(a) }
        for (name, value) in parameters { b = b.configParameter(name, value) }
        return b
    }
}


/// Raises this process's soft `RLIMIT_NOFILE` towards the hard limit (at most 8192): each
/// varlink connection costs two descriptors, so the default soft limit of 1024 would run out
/// before the server's limit of 512 connections. systemd's own advice for services (see
/// systemd.exec(5), LimitNOFILE=): raise the soft limit yourself when you need it.
func raiseDescriptorLimit(to wanted: rlim_t = 8192) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
    limit.rlim_cur = min(wanted, limit.rlim_max)
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
