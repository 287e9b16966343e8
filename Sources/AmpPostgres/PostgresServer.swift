#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

/// Where and how to reach a running server.
public struct PostgresHandle: Sendable, Equatable {
    /// `postgresql:///postgres?host=SOCKETDIR` (percent-encoded), plus `&port=` and `&user=`
    /// when they differ from libpq's defaults.
    public var url: String
    public var dataDirectory: String
    public var socketDirectory: String
    public var port: Int
    /// The PostgreSQL role to connect as (the account that ran `initdb`).
    public var user: String
    public var database: String
    /// The postmaster's PID.
    public var pid: pid_t
    /// `SHOW server_version` of the running server.
    public var serverVersion: String
    /// Its major version (`15`), 0 when unknown.
    public var serverMajor: Int { Int(serverVersion.prefix { $0.isNumber }) ?? 0 }
    /// For a server amp does not run (``ExternalServer``): its connection string; nil for the
    /// local cluster.
    public var externalConninfo: String? = nil

    /// A handle for an external server (no data directory, socket or postmaster here).
    public static func external(_ server: ExternalServer, answer: ExternalServer.Answer) -> PostgresHandle {
        var h = PostgresHandle(url: server.url(user: answer.user, database: answer.database), dataDirectory: "", socketDirectory: "",
                               port: Int(server.value("port") ?? "5432") ?? 5432, user: answer.user, database: answer.database, pid: 0,
                               serverVersion: answer.version)
        h.externalConninfo = server.conninfo
        return h
    }

    /// A libpq key/value connection string for this server.
    public var conninfo: String {
        if let externalConninfo { return externalConninfo }
        return LibPQ.socketConninfo(directory: socketDirectory, port: port, database: database, user: user, application: "ampd", connectTimeout: 5)
    }

    /// The URL for a server at `socketDirectory`.
    public static func url(socketDirectory: String, port: Int, database: String, user: String?) -> String {
        var url = "postgresql:///\(percentEncode(database))?host=\(percentEncode(socketDirectory))"
        if port != 5432 { url += "&port=\(port)" }
        if let user { url += "&user=\(percentEncode(user))" }
        return url
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(UnicodeScalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) {
                out.append(c)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// A running PostgreSQL server, owned by this process.
///
/// As a swift-service-lifecycle `Service`, ``run()`` returns when a graceful shutdown is
/// requested (after stopping PostgreSQL) and throws ``PostgresError/Code/exitedUnexpectedly``
/// if PostgreSQL dies on its own. The postmaster is started with `PR_SET_PDEATHSIG` = SIGQUIT
/// (immediate shutdown), so it does not outlive this process even if this process is killed
/// with SIGKILL.
public final class PostgresServer: Service, Sendable {
    public let handle: PostgresHandle
    public let version: PostgresVersion
    private let process: ChildProcess
    private let watcher: ReadinessWatcher
    private let stopTimeout: Duration
    private let logger: Logger
    private let recent: RecentLines
    private let stopping = Mutex(false)
    /// Whether the socket directory is a fallback amp made (removed at stop when empty).
    private let ownsSocketDirectory: Bool
    /// Set when PostgreSQL logged "No space left on device"; cleared by a health check that
    /// finds room again.
    private let diskFull: DiskFullFlag

    private init(
        handle: PostgresHandle, version: PostgresVersion, process: ChildProcess, watcher: ReadinessWatcher,
        stopTimeout: Duration, logger: Logger, recent: RecentLines, ownsSocketDirectory: Bool, diskFull: DiskFullFlag
    ) {
        self.ownsSocketDirectory = ownsSocketDirectory
        self.diskFull = diskFull
        self.handle = handle
        self.version = version
        self.process = process
        self.watcher = watcher
        self.stopTimeout = stopTimeout
        self.logger = logger
        self.recent = recent
    }

    /// The last lines PostgreSQL wrote (at most 50).
    public var recentLog: [String] { recent.lines }

    /// Starts the server process and waits until it accepts a query.
    ///
    /// Command: `postgres -D DATADIR -k SOCKETDIR -c NAME=VALUE …`
    /// - `-D`: the data directory;
    /// - `-k`: the Unix socket directory (`unix_socket_directories`);
    /// - `-c listen_addresses=`: no TCP at all;
    /// - `-c unix_socket_permissions=0700`: only the owner may connect (authentication is `trust`);
    /// - `-c log_destination=stderr -c logging_collector=off -c log_line_prefix='[%p] %e '`:
    ///   every message on our pipe, with PID and SQLSTATE for structured logging;
    /// - `-c fsync=off -c synchronous_commit=on -c full_page_writes=off -c autovacuum=off`:
    ///   development defaults, unless overridden; then the caller's parameters.
    ///
    /// Environment: `NOTIFY_SOCKET` names our private socket (see ``ReadinessWatcher``); our own
    /// `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID` and locale variables are not passed on.
    /// See <https://www.postgresql.org/docs/15/app-postgres.html> and
    /// <https://www.postgresql.org/docs/15/runtime-config-connection.html>.
    static func launch(
        binaries: PostgresBinaries, version: PostgresVersion, dataDirectory: String, socketDirectory: String,
        port: Int, parameters: [(name: String, value: String)], owner: ProcessCredentials?, ownsSocketDirectory: Bool = false,
        startTimeout: Duration, stopTimeout: Duration, logger: Logger,
        progress: @escaping @Sendable (PostgresStartPhase) -> Void = { _ in },
        onDiskFull: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws(PostgresError) -> PostgresServer {
        let watcher = try ReadinessWatcher(dataDirectory: dataDirectory)
        var args = ["-D", dataDirectory, "-k", socketDirectory]
        for (name, value) in parameters where name.lowercased() != "unix_socket_directories" {
            args += ["-c", "\(name)=\(value)"]
        }
        let recent = RecentLines(capacity: 50)
        let assembler = Mutex(PostgresLogAssembler())
        let log = logger
        let recovering = Mutex(false)
        let diskFull = DiskFullFlag()
        let env = childEnvironment(extra: ["NOTIFY_SOCKET": watcher.notifySocketAddress], account: owner)
        let child: ChildProcess
        let started = ContinuousClock.now
        progress(.starting)
        do {
            child = try await ChildProcess.spawn(SpawnConfiguration(
                executable: binaries.path("postgres"), arguments: args, environment: env,
                workingDirectory: dataDirectory,
                output: .lines { lines in
                    recent.append(lines)
                    let entries = assembler.withLock { $0.feed(lines) }
                    for entry in entries {
                        Self.log(entry, to: log)
                        if entry.announcesRecovery, !recovering.withLock({ let was = $0; $0 = true; return was }) {
                            progress(.recovering)
                        }
                        if DiskSpace.indicatesFull([entry.text]) {
                            let reason = "disk full on \(dataDirectory): \(DiskSpace.shortfall(needs: DiskSpace.runningBytes, on: dataDirectory)); free some space there"
                            if diskFull.set(reason) { onDiskFull(reason) }
                        }
                    }
                },
                deathSignal: SIGQUIT, newProcessGroup: true, credentials: owner))
        } catch {
            watcher.closeUnstarted()
            throw PostgresError(.startFailed, "\(error); check the binary directory", underlying: error)
        }
        logger.info("starting PostgreSQL", metadata: ["pid": "\(child.pid)", "socket": "\(socketDirectory)"])

        enum Startup: Sendable, Equatable { case ready(String, WireProbe.Outcome), exited(TerminationStatus), timedOut, cancelled, noThread(String) }
        let race = Race<Startup>()
        child.onExit { race.resolve(.exited($0)) }
        let user = owner?.name ?? currentUserName()
        let socketPath = SocketDirectory.socketPath(directory: socketDirectory, port: port)
        do {
            try watcher.start(pid: child.pid, dataDirectory: dataDirectory) { event in
                // The first confirmation runs right here on the watcher's thread: no hop between
                // PostgreSQL's READY=1 and our query.
                if case .ready(let source) = event {
                    let outcome = WireProbe.probe(socketPath: socketPath, user: user, database: "postgres", query: "SHOW server_version", timeout: .seconds(5))
                    race.resolve(.ready(source, outcome))
                }
            }
        } catch {
            race.resolve(.noThread("\(error)"))
        }
        let outcome = await race.wait(orAfter: startTimeout, .timedOut, onCancel: .cancelled)

        func fail(_ code: PostgresError.Code, _ message: String) async -> PostgresError {
            if child.exitStatus == nil {
                child.signal(SIGINT)
                if await child.wait(timeout: .seconds(5)) == nil {
                    child.signal(SIGKILL, group: true)
                    _ = await child.wait()
                }
            }
            watcher.close()
            await child.waitForOutput(timeout: .seconds(1))
            return PostgresError(code, message, details: recent.lines.suffix(10).map { $0 })
        }
        switch outcome {
        case .exited(let status):
            await child.waitForOutput(timeout: .seconds(1))
            if DiskSpace.indicatesFull(recent.lines) {
                let cause = recent.lines.last { $0.contains("No space left on device") } ?? "No space left on device"
                throw await fail(
                    .diskFull,
                    "PostgreSQL cannot start: the disk holding \(dataDirectory) is full (\(cause.trimmingWhitespace)); it \(DiskSpace.shortfall(needs: DiskSpace.startBytes, on: dataDirectory)) at least (a WAL segment): free some space, then start again")
            }
            let last = recent.lines.last { !$0.isEmpty } ?? "no output"
            throw await fail(.startFailed, "PostgreSQL exited during start-up (\(status)): \(last)")
        case .noThread(let why):
            throw await fail(.startFailed, "\(why); the system is out of threads or memory: stop something and start again")
        case .timedOut:
            throw await fail(.startTimedOut, "PostgreSQL did not become ready within \(startTimeout); see its log lines below, or raise the start timeout")
        case .cancelled:
            var error = await fail(.startFailed, "start-up was cancelled; PostgreSQL was stopped again")
            error.underlying = CancellationError()
            throw error
        case .ready(let source, let firstProbe):
            // Confirm with a real connection and query; retry briefly (bounded by the start
            // timeout) in case the signal raced ahead of the socket.
            let probeHandle = PostgresHandle(
                url: "", dataDirectory: dataDirectory, socketDirectory: socketDirectory, port: port, user: user,
                database: "postgres", pid: child.pid, serverVersion: "")
            var delay = Duration.milliseconds(5)
            var lastError = ""
            var pending: WireProbe.Outcome? = firstProbe
            while ContinuousClock.now - started < startTimeout && child.exitStatus == nil && !Task.isCancelled {
                let outcome: WireProbe.Outcome
                if let first = pending {
                    outcome = first
                    pending = nil
                } else {
                    outcome = await runOnThread(name: "amp-probe") {
                        WireProbe.probe(socketPath: socketPath, user: user, database: "postgres", query: "SHOW server_version", timeout: .seconds(5))
                    }
                }
                switch outcome {
                case .ok(let versionText):
                    var handle = probeHandle
                    handle.serverVersion = versionText ?? version.full
                    handle.url = PostgresHandle.url(
                        socketDirectory: socketDirectory, port: port, database: "postgres",
                        user: owner == nil ? nil : user)
                    logger.debug("PostgreSQL is ready", metadata: ["signal": "\(source)", "after": "\(ContinuousClock.now - started)"])
                    return PostgresServer(
                        handle: handle, version: version, process: child, watcher: watcher, stopTimeout: stopTimeout,
                        logger: logger, recent: recent, ownsSocketDirectory: ownsSocketDirectory, diskFull: diskFull)
                case .rejected(let code, let message): lastError = "\(message) (SQLSTATE \(code))"
                case .authenticationRequired: lastError = "the server asks for a password; amp's clusters use trust authentication (check pg_hba.conf)"
                case .noResponse(let why): lastError = why
                case .timedOut: lastError = "no answer within 5 s"
                }
                await uncancellableSleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            }
            throw await fail(
                .startFailed,
                "PostgreSQL reported ready but no query succeeded over \(socketDirectory): \(lastError)")
        }
    }

    /// Writes one PostgreSQL log entry to `logger` with its severity and fields.
    static func log(_ entry: PostgresLogEntry, to logger: Logger) {
        var metadata: Logger.Metadata = ["source": "postgres"]
        if let s = entry.severity { metadata["pg_severity"] = "\(s.rawValue)" }
        if let pid = entry.pid { metadata["pg_pid"] = "\(pid)" }
        if let code = entry.sqlState { metadata["pg_sqlstate"] = "\(code)" }
        // pgaudit's entries carry their class and command as fields (`journalctl PG_AUDIT=DDL`).
        if let audit = AuditRecord(message: entry.message) {
            metadata["pg_audit"] = "\(audit.auditClass)"
            metadata["pg_audit_command"] = "\(audit.command)"
            metadata["pg_audit_type"] = "\(audit.type)"
        }
        logger.log(level: entry.severity?.loggerLevel ?? .info, "\(entry.text)", metadata: metadata)
    }

    /// Runs until a graceful shutdown (then stops PostgreSQL and returns) or until PostgreSQL
    /// exits on its own (then throws). Cancellation also stops PostgreSQL.
    public func run() async throws {
        enum Outcome: Sendable { case shutdown, exited(TerminationStatus) }
        let race = Race<Outcome>()
        process.onExit { race.resolve(.exited($0)) }
        let outcome = await withGracefulShutdownHandler {
            await race.wait(onCancel: .shutdown)
        } onGracefulShutdown: {
            race.resolve(.shutdown)
        }
        switch outcome {
        case .shutdown:
            await stop()
        case .exited(let status):
            watcher.close()
            if stopping.withLock({ $0 }) { return }
            await process.waitForOutput(timeout: .seconds(1))
            throw PostgresError(
                .exitedUnexpectedly,
                "PostgreSQL (PID \(handle.pid)) exited unexpectedly (\(status)); see its last log lines",
                details: Array(recent.lines.suffix(10)))
        }
    }

    /// Checks that the server is alive and answering, for a watchdog: the postmaster has not
    /// exited, is not stopped (SIGSTOP, a debugger) and answers a connection over its socket
    /// within `timeout` — the same test as libpq's `PQping` (an answer that rejects the login
    /// with 57P03 cannot_connect_now is "rejecting"; any other answer means alive), made by
    /// ``WireProbe`` on a thread of its own, bounded by `timeout`.
    ///
    /// See <https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-PQPING>.
    public func checkHealth(timeout: Duration) async -> PostgresHealth {
        let pid = handle.pid
        if let status = process.exitStatus {
            return .unhealthy("the postmaster (PID \(pid)) has exited (\(status))")
        }
        switch ProcessInspector.state(pid: pid) {
        case "T"?, "t"?: return .unhealthy("the postmaster (PID \(pid)) is stopped (SIGSTOP or a debugger)")
        case "Z"?, nil: return .unhealthy("the postmaster (PID \(pid)) has exited")
        default: break
        }
        let socketPath = SocketDirectory.socketPath(directory: handle.socketDirectory, port: handle.port)
        let user = handle.user, database = handle.database
        let answered = await runOnThread(name: "amp-health", { WireProbe.probe(socketPath: socketPath, user: user, database: database, query: nil, timeout: timeout) })
        // Alive, but it reported a full disk: degraded until there is room again.
        if let reason = diskFull.reason {
            if (DiskSpace.available(at: handle.dataDirectory) ?? 0) >= DiskSpace.runningBytes {
                diskFull.clear()
            } else if case .ok = answered {
                return .degraded(reason)
            }
        }
        switch answered {
        case .ok: return .healthy
        case .authenticationRequired: return .healthy  // answering, as PQping counts it
        case .rejected(let code, let message):
            // Like PQping: an answer that refuses is "rejecting", other errors still mean alive.
            return code == "57P03" ? .unhealthy("PostgreSQL rejects connections: \(message)") : .healthy
        case .noResponse(let why): return .unhealthy("PostgreSQL does not answer on \(socketPath): \(why)")
        case .timedOut: return .unhealthy("PostgreSQL did not answer a connection within \(timeout)")
        }
    }

    /// Stops the server: fast shutdown (SIGINT to the postmaster), then after the stop timeout
    /// an immediate shutdown (SIGQUIT), then SIGKILL to its process group.
    /// Returns the exit status. Safe to call more than once.
    ///
    /// See <https://www.postgresql.org/docs/15/server-shutdown.html>.
    @discardableResult
    public func stop() async -> TerminationStatus {
        stopping.withLock { $0 = true }
        defer {
            watcher.close()
            // A fallback socket directory ($XDG_RUNTIME_DIR/amp/pg-HASH) is amp's own: remove
            // it once empty (rmdir fails harmlessly while anything is left in it).
            if ownsSocketDirectory { rmdir(handle.socketDirectory) }
        }
        if let status = process.exitStatus { return status }
        logger.info("stopping PostgreSQL (fast shutdown)", metadata: ["pid": "\(handle.pid)"])
        let started = ContinuousClock.now
        process.signal(SIGINT)
        if let status = await process.wait(timeout: stopTimeout) {
            await process.waitForOutput(timeout: .seconds(1))
            logger.info("PostgreSQL stopped", metadata: ["after": "\(ContinuousClock.now - started)", "status": "\(status)"])
            return status
        }
        logger.warning("PostgreSQL did not stop within \(stopTimeout); immediate shutdown (SIGQUIT)")
        process.signal(SIGQUIT)
        if let status = await process.wait(timeout: .seconds(5)) { return status }
        logger.error("PostgreSQL ignored SIGQUIT; killing its process group (SIGKILL)")
        process.signal(SIGKILL, group: true)
        return await process.wait()
    }
}

/// The outcome of ``PostgresServer/checkHealth(timeout:)``.
public enum PostgresHealth: Sendable, Equatable {
    case healthy
    /// Alive and answering, but with a problem the user must fix (a full disk): not a reason
    /// to restart it.
    case degraded(String)
    /// Not healthy, with the reason in words.
    case unhealthy(String)
}

func currentUserName() -> String {
    ProcessCredentials.lookup(uid: geteuid())?.name ?? (getenv("USER").map { String(cString: $0) } ?? "postgres")
}

/// A full disk reported by PostgreSQL, until a health check finds room again.
final class DiskFullFlag: Sendable {
    private let storage = Mutex<String?>(nil)
    /// Records `reason`; returns whether the flag was clear before.
    func set(_ reason: String) -> Bool { storage.withLock { s in defer { s = reason }; return s == nil } }
    func clear() { storage.withLock { $0 = nil } }
    var reason: String? { storage.withLock { $0 } }
}
