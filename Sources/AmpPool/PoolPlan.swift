import AmpConfig

/// How big the pool is: a pure function of the settings and measured facts, tested without
/// I/O.
///
/// - Server connections (`default_pool_size`, and `max_db_connections` so that several users
///   of one database share the bound): `[pool] size`, else 4 per CPU and at least 4. Either
///   way within `max_connections` less ``keptForDirect`` (superuser_reserved_connections,
///   ampd's own sessions, the archiver, base backups and a developer's psql connect directly).
/// - Clients (`max_client_conn`): `[pool] max_clients`, else what the descriptor limit
///   PgBouncer inherits allows (a client and a server connection each take a descriptor),
///   at most 10000.
public struct PoolPlan: Sendable, Equatable {
    public var mode: PoolMode
    /// `default_pool_size` and `max_db_connections`.
    public var serverConnections: Int
    /// `max_client_conn`.
    public var maxClients: Int
    /// Things to say once in the log.
    public var notes: [String] = []

    public init(mode: PoolMode, serverConnections: Int, maxClients: Int, notes: [String] = []) {
        self.mode = mode
        self.serverConnections = serverConnections
        self.maxClients = maxClients
        self.notes = notes
    }

    /// Connections of `max_connections` the pool leaves to direct sessions.
    public static let keptForDirect = 10
    /// Descriptors PgBouncer keeps for itself (listeners, logs, DNS).
    static let ownDescriptors = 64

    /// Why a plan cannot be made: the setting, its value and the fix.
    public struct Problem: Error, Sendable, Equatable {
        public var message: String
    }

    /// The plan for `size` / `maxClients` (nil: defaults) on a server with `maxConnections`,
    /// `cpus`, and `descriptorLimit` (the soft `RLIMIT_NOFILE` PgBouncer starts with).
    public static func decide(mode: PoolMode, size: Int?, maxClients: Int?, maxConnections: Int, cpus: Int, descriptorLimit: Int) -> Result<PoolPlan, Problem> {
        let room = maxConnections - keptForDirect
        guard room >= 1 else {
            return .failure(Problem(message: "[pool] enabled: max_connections = \(maxConnections) leaves no server connections for the pool (it keeps \(keptForDirect) for direct sessions); raise max_connections in [postgres.parameters] to at least \(keptForDirect + 2)"))
        }
        let servers: Int
        if let size {
            guard size <= room else {
                return .failure(Problem(message: "[pool] size = \(size) is more than max_connections = \(maxConnections) allows (\(room): \(keptForDirect) are kept for direct sessions); lower size, or raise max_connections in [postgres.parameters]"))
            }
            servers = size
        } else {
            servers = min(max(4, 4 * max(1, cpus)), room)
        }
        let allowed = max(1, descriptorLimit - servers - ownDescriptors)
        var plan = PoolPlan(mode: mode, serverConnections: servers, maxClients: min(maxClients ?? min(allowed, 10_000), 10_000))
        if let maxClients, maxClients > allowed {
            plan.notes.append("[pool] max_clients = \(maxClients): PgBouncer's descriptor limit (\(descriptorLimit)) allows about \(allowed); clients beyond that are refused by the kernel (raise LimitNOFILE=)")
        }
        return .success(plan)
    }
}
