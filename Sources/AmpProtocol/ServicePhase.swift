/// Where the service is: the one lifecycle type. The systemd notifier (`STATUS=`), the status
/// board (`GetStatus`, `WatchStatus`, `ampctl status`) and the daemon are all driven from it,
/// so a phase is named and worded in this one place.
public enum ServicePhase: Sendable, Equatable {
    /// Locating the binaries and checking the data directory.
    case checking
    /// Running initdb (or copying the cached template) for a new cluster.
    case initialisingCluster
    /// PostgreSQL runs and is starting up.
    case starting
    /// PostgreSQL replays WAL after an unclean shutdown.
    case recovering
    /// A new cluster runs its seed scripts (`[postgres] seed`) before it is called ready.
    case seeding(file: String)
    /// PostgreSQL is stopped for work on the cluster (a snapshot, a restore), in words.
    case maintenance(String)
    /// PostgreSQL answers queries at `url`.
    case ready(url: String)
    /// PostgreSQL exited unexpectedly and ampd starts it again (`restart` counts them).
    case restarting(restart: Int, reason: String)
    /// A graceful shutdown is under way.
    case stopping
    /// ampd gave up; the message says why.
    case failed(String)
    /// Waiting for the first answer of an external server (`[postgres] url`).
    case connecting(server: String)
    /// An external server answered: ampd serves it (READY=1 once); health follows its answers.
    case external(server: String)

    /// The words for it: systemd's `STATUS=` and the status's `phase`.
    public var statusText: String {
        switch self {
        case .checking: return "checking the cluster"
        case .initialisingCluster: return "initialising cluster (initdb)"
        case .starting: return "starting PostgreSQL"
        case .recovering: return "recovering after an unclean shutdown"
        case .seeding(let file): return "seeding the new cluster: \(file)"
        case .maintenance(let what): return what
        case .ready(let url): return "ready: \(url)"
        case .restarting(let restart, let reason): return "restarting PostgreSQL (restart \(restart)): \(reason)"
        case .stopping: return "stopping"
        case .failed(let message): return "failed: \(message)"
        case .connecting(let server): return "connecting to the external server \(server)"
        case .external(let server): return "external server \(server): reachable"
        }
    }

    /// The words for an external server that stopped answering.
    public static func unreachableText(_ server: String, _ reason: String) -> String { "external server \(server): unreachable: \(reason)" }

    /// The words for a ready server with a problem (a failed health check, a full disk).
    public static func unhealthyText(_ reason: String) -> String { "unhealthy: \(reason)" }

    /// The state `io.amp.Metadb` reports for it.
    public var state: MetadbStatus.State {
        switch self {
        case .checking, .initialisingCluster, .starting, .recovering, .seeding, .maintenance, .restarting, .connecting: return .starting
        case .external: return .external
        case .ready: return .ready
        case .stopping: return .stopping
        case .failed: return .failed
        }
    }
}
