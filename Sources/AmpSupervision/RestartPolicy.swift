/// When ampd restarts PostgreSQL itself after it exited unexpectedly: a pure state machine
/// (events in, decisions out), tested without I/O.
///
/// - A crash after PostgreSQL served for at least ``stableAfter`` restarts it after
///   ``initialDelay``: a developer who kills the postmaster ten times in a minute gets ten
///   recoveries, each serving again within a second.
/// - A start that fails, or a server that dies again within ``stableAfter`` of being ready,
///   is one more failure in a row; the delay doubles up to ``maximumDelay``.
/// - After ``maximumFailuresInARow`` failures in a row ampd gives up (exit 70), and the
///   service manager's own `Restart=` takes over.
public struct RestartPolicy: Sendable, Equatable {
    public static let initialDelay: Duration = .milliseconds(100)
    public static let maximumDelay: Duration = .seconds(10)
    public static let stableAfter: Duration = .seconds(1)
    public static let maximumFailuresInARow = 8

    /// What happened.
    public enum Event: Sendable, Equatable {
        /// PostgreSQL exited unexpectedly after serving for `uptime`.
        case exited(uptime: Duration)
        /// A restart attempt failed before PostgreSQL was ready.
        case startFailed
    }

    /// What to do.
    public enum Decision: Sendable, Equatable {
        /// Start PostgreSQL again after `delay`; `attempt` counts the failures in a row (1…).
        case restart(after: Duration, attempt: Int)
        /// Stop trying: the failures in a row reached the limit.
        case giveUp(failures: Int)
    }

    /// Restarts decided so far (each `restart` decision counts one).
    public private(set) var restarts = 0
    private var failuresInARow = 0
    private var delay = RestartPolicy.initialDelay

    public init() {}

    public mutating func handle(_ event: Event) -> Decision {
        switch event {
        case .exited(let uptime) where uptime >= Self.stableAfter:
            failuresInARow = 1
            delay = Self.initialDelay
        case .exited, .startFailed:
            failuresInARow += 1
            if failuresInARow > 1 { delay = min(delay * 2, Self.maximumDelay) }
        }
        guard failuresInARow <= Self.maximumFailuresInARow else { return .giveUp(failures: failuresInARow - 1) }
        restarts += 1
        return .restart(after: delay, attempt: failuresInARow)
    }
}
