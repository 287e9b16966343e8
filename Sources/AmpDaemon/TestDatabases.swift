#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import Logging
import ServiceLifecycle
import Synchronization
import SystemSupport
import ThreadSupport

/// Throwaway test databases: clones of a template handed out by `AcquireTestDatabase` for as
/// long as the caller's varlink call lasts, with a pool per template made ahead of time, so
/// handing one out costs no `CREATE DATABASE`.
///
/// Names start with ``prefix`` and carry the comment ``comment``: at start-up ampd drops every
/// such database (leftovers of a client or an ampd that crashed), together with the temporary
/// databases of imports and copies whose ampctl is gone (``dropLeftovers(handle:logger:)``).
///
/// A pooled clone is handed out only while its template is unchanged since the clone was made:
/// the template's activity counters in `pg_stat_database` (sessions, commits, rollbacks, tuples
/// written; a session's counters are flushed when it ends) must be the ones recorded then, and
/// no session may be connected to it (a migration still running). Otherwise the pool of that
/// template is dropped and a fresh clone made for the caller; the pool is refilled in the
/// background either way.
final class TestDatabasePool: Sendable {
    static let prefix = Metadb.testDatabasePrefix
    static let comment = "amp test database"
    /// Clones kept ready per template.
    let size: Int
    private let logger: Logger
    private let board: StatusBoard
    private let state = Mutex<State>(State())
    private let requests: AsyncStream<String>
    private let requestSink: AsyncStream<String>.Continuation

    private struct State {
        var ready: [String: [(name: String, fingerprint: String)]] = [:]
        var counter = 0
        var handedOut: Set<String> = []
    }

    /// ampd's kept connections, closed before a copy of the database they sit on.
    let sessions: LibPQSessions
    /// Connections for the checks of the templates, kept (one per concurrent caller, up to 8).
    let checks: LibPQSessionSlot

    init(board: StatusBoard, sessions: LibPQSessions, logger: Logger, size: Int = 8) {
        self.board = board
        self.sessions = sessions
        self.checks = sessions.slot(capacity: 8)
        self.logger = logger
        self.size = size
        (requests, requestSink) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(64))
    }

    /// A new unique name.
    private func nextName() -> String {
        let n = state.withLock { s -> Int in s.counter += 1; return s.counter }
        return Self.prefix + "\(getpid())_\(n)"
    }

    /// The template's change fingerprint and its open sessions, read on `conninfo` (the
    /// default database, never the template itself).
    static func fingerprint(_ conninfo: String, template: String, on slot: LibPQSessionSlot) -> (fingerprint: String, sessions: Int)? {
        guard let row = (try? slot.rows(conninfo, ClusterQueries.activity(of: template)))?.first else { return nil }
        let values = row.map { $0 ?? "0" }
        return (values.dropFirst().joined(separator: ":"), Int(values.first ?? "0") ?? 0)
    }

    /// Makes a clone of `template` named `name` (with the marker comment), with ampd's kept
    /// connections closed first when they sit on the template (``LibPQSessions/copying``).
    static func clone(_ template: String, as name: String, handle: PostgresHandle, sessions: LibPQSessions) throws(LibPQError) {
        let create = ClusterQueries.createDatabase(name, template: template, strategy: CloneStrategy.walLog.rawValue, serverMajor: handle.serverMajor)
        _ = try sessions.copying(source: template, keptOn: handle.database) { () throws(LibPQError) in
            try LibPQ.rows(handle.conninfo, create)
        }
        _ = try? LibPQ.rows(handle.conninfo, ClusterQueries.comment(on: name, comment))
    }

    static func drop(_ name: String, handle: PostgresHandle) {
        _ = try? LibPQ.rows(handle.conninfo, ClusterQueries.dropDatabase(name, force: true, ifExists: true))
    }

    /// A database for a caller: a pooled clone when the template is unchanged, else a fresh one.
    func acquire(template: String, handle: PostgresHandle) async throws(MetadbError) -> (name: String, pooled: Bool) {
        defer { requestSink.yield(template) }
        let conninfo = handle.conninfo
        let checks = self.checks
        let now = await runOnThread(name: "amp-testdb") { Self.fingerprint(conninfo, template: template, on: checks) }
        guard let now else { throw .noSuchDatabase(name: template) }
        if now.sessions == 0 {
            let pooled: String? = state.withLock { s in
                var list = s.ready[template] ?? []
                guard let i = list.firstIndex(where: { $0.fingerprint == now.fingerprint }) else { return nil }
                let name = list.remove(at: i).name
                s.ready[template] = list
                s.handedOut.insert(name)
                return name
            }
            if let pooled { return (pooled, true) }
        }
        // Changed (or busy): the pool of this template is stale.
        let stale: [String] = state.withLock { s in
            let names = (s.ready[template] ?? []).filter { $0.fingerprint != now.fingerprint }.map(\.name)
            s.ready[template] = (s.ready[template] ?? []).filter { $0.fingerprint == now.fingerprint }
            return names
        }
        let name = nextName()
        let result = await runOnThread(name: "amp-testdb") { () -> Result<Void, LibPQError> in
            for n in stale { Self.drop(n, handle: handle) }
            return Result { () throws(LibPQError) in try Self.clone(template, as: name, handle: handle, sessions: self.sessions) }
        }
        switch result {
        case .success:
            state.withLock { _ = $0.handedOut.insert(name) }
            return (name, false)
        case .failure(let e):
            if e.sqlState == "55006" {
                throw .databaseInUse(name: template, connections: max(1, now.sessions), sessions: [])
            }
            throw .queryFailed(message: e.message, sqlstate: e.sqlState)
        }
    }

    /// Drops a database handed out before; false when it was not one.
    func release(_ name: String, handle: PostgresHandle) async -> Bool {
        let known = state.withLock { $0.handedOut.remove(name) != nil }
        guard known else { return false }
        await runOnThread(name: "amp-testdb") { Self.drop(name, handle: handle) }
        logger.debug("dropped test database \(name)")
        return true
    }

    /// Runs until the task is cancelled: drops the leftovers of earlier runs once PostgreSQL is
    /// ready, then refills a template's pool whenever one was used.
    func run() async {
        for await status in board.watch() where status.state == .ready {
            if let handle = board.handle {
                await runOnThread(name: "amp-testdb") { Self.dropLeftovers(handle: handle, logger: self.logger) }
                break
            }
        }
        for await template in requests {
            guard let handle = board.handle else { continue }
            await refill(template, handle: handle)
        }
    }

    /// Drops amp's leftovers: every test database (the marker or the reserved prefix), and the
    /// temporary databases of `ampctl import`, `push` and `pull` (`NAME__import_PID`,
    /// `NAME__amp_copy_PID`) whose ampctl is gone — interrupted by SIGKILL or a crash. Through
    /// ``WireProbe``, not libpq: this runs at every start, and loading libpq would cost ampd's
    /// idle memory.
    static func dropLeftovers(handle: PostgresHandle, logger: Logger? = nil) {
        let socket = SocketDirectory.socketPath(directory: handle.socketDirectory, port: handle.port)
        let list = ClusterQueries.leftoverDatabases(comment: comment, prefix: prefix)
        guard case .ok(let names?) = WireProbe.probe(socketPath: socket, user: handle.user, database: handle.database, query: list, timeout: .seconds(30))
        else { return }
        for name in names.split(separator: " ").map(String.init) where Metadb.databaseNameProblem(name) == nil {
            if let owner = Metadb.temporaryDatabaseOwner(name) {
                guard !isAmpctl(owner) else { continue }
                logger?.notice("dropping \(name), left over by ampctl (PID \(owner)) that is gone")
            } else if !name.hasPrefix(prefix) {
                continue
            }
            _ = WireProbe.probe(socketPath: socket, user: handle.user, database: handle.database,
                                query: ClusterQueries.dropDatabase(name, force: true, ifExists: true), timeout: .seconds(60))
        }
    }

    /// Whether `pid` is a running ampctl (its command name, not just the number: a PID may
    /// have been reused by something else since).
    static func isAmpctl(_ pid: Int32) -> Bool {
        guard pid > 0, let comm = FileContents.text("/proc/\(pid)/comm", limit: 64) else { return false }
        return comm.trimmingWhitespace == "ampctl"
    }

    private func refill(_ template: String, handle: PostgresHandle) async {
        let conninfo = handle.conninfo, checks = self.checks
        while state.withLock({ ($0.ready[template]?.count ?? 0) < size }) {
            guard let before = await runOnThread(name: "amp-testdb", { Self.fingerprint(conninfo, template: template, on: checks) }), before.sessions == 0 else { return }
            let name = nextName()
            let made = await runOnThread(name: "amp-testdb") { (try? Self.clone(template, as: name, handle: handle, sessions: self.sessions)) != nil }
            guard made else { return }
            // Recorded only when the template did not change while it was copied.
            guard let after = await runOnThread(name: "amp-testdb", { Self.fingerprint(conninfo, template: template, on: checks) }), after.fingerprint == before.fingerprint else {
                await runOnThread(name: "amp-testdb") { Self.drop(name, handle: handle) }
                return
            }
            state.withLock { $0.ready[template, default: []].append((name, before.fingerprint)) }
        }
    }

    /// Asks for a template's pool to be filled (e.g. right after the first use).
    func prefill(_ template: String) { requestSink.yield(template) }

    func finish() { requestSink.finish() }
}

/// The pool as a service of the group: started after the varlink server, refilling in the
/// background until shutdown.
struct TestDatabasePoolService: Service {
    let pool: TestDatabasePool

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await pool.run()
        }
    }
}
