#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpMetrics
import AmpPool
import AmpPostgres
import CSocket
import Logging
import ServiceLifecycle
import ThreadSupport

/// The project's metrics: PostgreSQL's (``PostgresMetrics``, through one kept session of the
/// ``LibPQSessions`` registry, so clones are not blocked) and amp's own (the status board).
/// Served by ``MetricsListener`` (`[metrics] listen`) and `GetMetrics` (`ampctl metrics`).
///
/// Why ampd and not prometheus-postgres-exporter beside it: no second process per project, no
/// connection settings or password to give it, amp's own figures in the same scrape, and the
/// series users' dashboards expect under postgres_exporter's names.
final class MetricsCollector: Sendable {
    let board: StatusBoard
    let session: LibPQSessionSlot
    /// postgres_exporter's names (`[metrics] exporter_names`), else Prometheus's rules.
    let exporterNames: Bool
    /// The pool's figures, when `[pool] enabled`.
    let pool: PoolSupervisor?

    init(board: StatusBoard, session: LibPQSessionSlot, exporterNames: Bool = true, pool: PoolSupervisor? = nil) {
        self.board = board
        self.session = session
        self.exporterNames = exporterNames
        self.pool = pool
    }

    /// The pool's series, under pgbouncer_exporter's names (its dashboards work): up, and per
    /// database and user the clients active and waiting, the server connections active and
    /// idle, the longest wait; and PgBouncer's restarts by ampd.
    static func poolFamilies(_ figures: PoolFigures?, restarts: Int) -> [MetricFamily] {
        var families = [
            MetricFamily("pgbouncer_up", .gauge, "Whether PgBouncer answered SHOW POOLS for this scrape", [.init([], figures == nil ? 0 : 1)]),
            MetricFamily("amp_pool_restarts_total", .counter, "Restarts of PgBouncer by ampd", [.init([], Double(restarts))]),
        ]
        guard let figures else { return families }
        func family(_ name: String, _ help: String, _ value: (PoolFigures.Pool) -> Double) -> MetricFamily {
            MetricFamily(name, .gauge, help, figures.pools.map { .init([.init("database", $0.database), .init("user", $0.user)], value($0)) })
        }
        families += [
            family("pgbouncer_pools_client_active_connections", "Clients linked to a server connection or idle (cl_active)") { Double($0.clientsActive) },
            family("pgbouncer_pools_client_waiting_connections", "Clients waiting for a server connection (cl_waiting)") { Double($0.clientsWaiting) },
            family("pgbouncer_pools_server_active_connections", "Server connections linked to a client (sv_active)") { Double($0.serversActive) },
            family("pgbouncer_pools_server_idle_connections", "Server connections free for a client (sv_idle, sv_used, sv_tested, sv_login)") { Double($0.serversIdle) },
            family("pgbouncer_pools_client_maxwait_seconds", "How long the oldest waiting client has waited") { $0.maxWaitSeconds },
        ]
        return families
    }

    func render() async -> String {
        let started = ContinuousClock.now
        var families: [MetricFamily] = []
        var up = 0.0
        var healthSeconds: Double?
        if let handle = board.handle, board.status.state == .ready {
            // The health check's own probe (a connection over the socket, as PQping), timed.
            let socketPath = SocketDirectory.socketPath(directory: handle.socketDirectory, port: handle.port)
            let user = handle.user, database = handle.database
            healthSeconds = await runOnThread(name: "amp-metrics") { () -> Double? in
                let started = ContinuousClock.now
                switch WireProbe.probe(socketPath: socketPath, user: user, database: database, query: nil, timeout: .seconds(5)) {
                case .ok, .authenticationRequired, .rejected:
                    let d = ContinuousClock.now - started
                    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                case .noResponse, .timedOut: return nil
                }
            }
        }
        if let conninfo = board.handle?.conninfo {
            let session = self.session
            let results: [[MetricFamily]?] = await runOnThread(name: "amp-metrics") {
                PostgresMetrics.queries.map { query in (try? session.rows(conninfo, query.sql)).map(query.families) }
            }
            up = results.contains { $0 != nil } ? 1 : 0
            families += results.compactMap { $0 }.flatMap { $0 }
        }
        let status = board.status
        var own: [MetricFamily] = [
            MetricFamily("pg_up", .gauge, "Whether PostgreSQL answered the last scrape", [.init([], up)]),
            MetricFamily("amp_state", .gauge, "The service's state (1 for the current one)", [.init([.init("state", status.state.rawValue)], 1)]),
            MetricFamily("amp_restarts_total", .counter, "In-process restarts of PostgreSQL by ampd since the unit started", [.init([], Double(status.restarts))]),
        ]
        if let uptime = status.uptimeSeconds { own.append(MetricFamily("amp_postgres_uptime_seconds", .gauge, "Seconds since PostgreSQL became ready", [.init([], uptime)])) }
        if let healthy = status.healthy { own.append(MetricFamily("amp_healthy", .gauge, "Whether the last health check passed", [.init([], healthy ? 1 : 0)])) }
        if let healthSeconds {
            own.append(MetricFamily("amp_health_check_seconds", .gauge, "Time the health check's probe (a connection over the socket, as PQping) took at this scrape", [.init([], healthSeconds)]))
        }
        if let lag = status.archiveLagSeconds { own.append(MetricFamily("amp_archive_lag_seconds", .gauge, "How far the continuous archive is behind", [.init([], lag)])) }
        if let archive = status.archive {
            own.append(MetricFamily("amp_archive_problem", .gauge, "Whether the archive reports a problem (1) or not (0)",
                                    [.init([.init("state", String(archive.prefix { $0 != ":" }.prefix(40)))], status.archiveProblem == nil ? 0 : 1)]))
        }
        if let pool { own += Self.poolFamilies(await pool.currentFigures(), restarts: status.pool?.restarts ?? 0) }
        let elapsed = ContinuousClock.now - started
        own.append(MetricFamily("amp_scrape_duration_seconds", .gauge, "Time this scrape took",
                                [.init([], Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)]))
        let all = own + families
        return PrometheusText.render(exporterNames ? all : all.map(\.conventional))
    }
}

/// `[metrics] listen`: `GET /metrics` over HTTP on a TCP address, one request per connection,
/// answered in turn (a scrape every few seconds is its load), each bounded by 5 s of reading.
final class MetricsListener: Sendable {
    let display: String
    private let listenFD: Int32
    private let stopFD: Int32
    let collector: MetricsCollector
    let logger: Logger

    /// Binds `address` (`auto`: 127.0.0.1:9187, postgres_exporter's port); the error names the setting.
    init(_ address: ListenAddress, source: String, collector: MetricsCollector, logger: Logger) throws(DaemonError) {
        var host = "127.0.0.1", port = 9187
        if case .address(let h, let p) = address {
            host = h == "*" ? "0.0.0.0" : (h == "localhost" ? "127.0.0.1" : h)
            port = p
        }
        display = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let fd = amp_tcp_listen(host, Int32(port), 64)
        guard fd >= 0 else {
            throw DaemonError(.config, "\(source): cannot listen on \(display) for metrics: \(String(cString: strerror(-fd))); choose a free address (or remove [metrics] listen)")
        }
        let efd = amp_eventfd()
        guard efd >= 0 else {
            close(fd)
            throw DaemonError(.failure, "eventfd: \(String(cString: strerror(-efd)))")
        }
        listenFD = fd
        stopFD = efd
        self.collector = collector
        self.logger = logger
    }

    /// Serves until cancelled, then closes the socket.
    func run() async {
        let (accepted, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .bufferingNewest(16))
        let listenFD = self.listenFD, stopFD = self.stopFD
        do {
            try startDetachedThread(name: "metrics-accept") {
                while true {
                    var r1: Int16 = 0, r2: Int16 = 0
                    _ = amp_poll2(listenFD, Int16(POLLIN), &r1, stopFD, Int16(POLLIN), &r2, 1000)
                    if r2 != 0 { break }
                    guard r1 != 0 else { continue }
                    let fd = amp_unix_accept(listenFD)
                    if fd >= 0 {
                        if case .dropped(let old) = continuation.yield(fd) { close(old) }
                    } else {
                        // Out of descriptors: wait instead of spinning on the pending connection.
                        var ignored: Int16 = 0, stop: Int16 = 0
                        _ = amp_poll2(stopFD, Int16(POLLIN), &stop, -1, 0, &ignored, 1000)
                        if stop != 0 { break }
                    }
                }
                continuation.finish()
            }
        } catch {
            logger.warning("metrics listener cannot serve: \(error)")
            continuation.finish()
        }
        await withTaskCancellationHandler {
            for await fd in accepted { await serve(fd) }
        } onCancel: {
            amp_eventfd_signal(stopFD)
        }
        close(listenFD)
        close(stopFD)
    }

    private func serve(_ fd: Int32) async {
        let head: [UInt8] = await runOnThread(name: "amp-metrics-read") {
            var bytes: [UInt8] = []
            let deadline = ContinuousClock.now + .seconds(5)
            var buffer = [UInt8](repeating: 0, count: 2048)
            while bytes.count < MetricsHTTP.maximumRequest, !MetricsHTTP.isComplete(bytes), ContinuousClock.now < deadline {
                var r: Int16 = 0, ignored: Int16 = 0
                _ = amp_poll2(fd, Int16(POLLIN), &r, -1, 0, &ignored, 500)
                guard r != 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }; break }
                bytes += buffer[0..<n]
            }
            return bytes
        }
        let response: [UInt8]
        switch MetricsHTTP.route(head) {
        case .metrics(let headOnly):
            response = MetricsHTTP.response(status: 200, reason: "OK", contentType: PrometheusText.contentType, body: await collector.render(), headOnly: headOnly)
        case .status(let code, let reason):
            response = MetricsHTTP.response(status: code, reason: reason, contentType: "text/plain; charset=utf-8", body: "\(reason): amp serves GET /metrics\n")
        }
        await runOnThread(name: "amp-metrics-write") {
            var offset = 0
            let deadline = ContinuousClock.now + .seconds(5)
            while offset < response.count, ContinuousClock.now < deadline {
                let n = response[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                if n > 0 { offset += n; continue }
                if n < 0 && errno != EAGAIN && errno != EINTR { break }
                var w: Int16 = 0, ignored: Int16 = 0
                _ = amp_poll2(fd, Int16(POLLOUT), &w, -1, 0, &ignored, 500)
            }
            Glibc.shutdown(fd, Int32(SHUT_WR))
            close(fd)
        }
    }
}

/// The listener as a service of the group.
struct MetricsService: Service {
    let listener: MetricsListener
    func run() async throws {
        await cancelWhenGracefulShutdown { await listener.run() }
    }
}
