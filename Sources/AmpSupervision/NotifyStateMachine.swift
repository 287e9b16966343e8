import AmpProtocol
import AmpSystemd

/// What a `Type=notify` service tells systemd, and when: a pure state machine (events in,
/// actions out) without I/O, driven by the daemon and tested on its own.
///
/// - `STATUS=` follows every phase; `READY=1` is sent once, on ``Phase/ready(url:)``;
///   `STOPPING=1` on ``Phase/stopping``.
/// - While starting (initdb, start-up, crash recovery) or stopping (shutdown checkpoint),
///   every tick asks for more time with `EXTEND_TIMEOUT_USEC=`, so the unit's timeouts only
///   catch a daemon that stopped ticking; the daemon's own (configurable) start and stop
///   timeouts bound the work itself.
/// - With a watchdog, every tick while ready asks for a health check, and only a check that
///   succeeded sends `WATCHDOG=1`: a hung server therefore ends in `Result=watchdog`, never
///   masked by a free-running timer.
public struct NotifyStateMachine: Sendable {
    /// Where the service is: the one lifecycle type, shared with the status board.
    public typealias Phase = ServicePhase

    /// What the machine reacts to.
    public enum Event: Sendable, Equatable {
        case phase(Phase)
        /// The periodic timer fired (every ``tickInterval``).
        case tick
        /// A health check asked for by ``Action/checkHealth`` finished.
        case healthChecked(healthy: Bool, reason: String)
        /// PostgreSQL is alive but has a problem a restart cannot fix (a full disk): reported
        /// by its log (`checked` false) or by a health check (`checked` true, which also
        /// counts as a passed check for the watchdog). Ticks then run (with or without a
        /// watchdog) until a check finds it healthy again.
        case degraded(reason: String, checked: Bool)
    }

    /// What the driver must do, in order.
    public enum Action: Sendable, Equatable {
        case notify([NotifyMessage])
        /// Run a health check bounded by ``tickInterval``, then feed ``Event/healthChecked(healthy:reason:)``.
        case checkHealth
        case logNotice(String)
        case logWarning(String)
    }

    /// The watchdog interval (`WatchdogSec=`), when the manager enabled the watchdog.
    public let watchdogInterval: Duration?
    /// How often the driver sends ``Event/tick``: a third of the watchdog interval (so one
    /// slow or failed check still leaves a second chance before it fires), at least 0.5 s;
    /// 5 s without a watchdog.
    public let tickInterval: Duration
    /// How much time each `EXTEND_TIMEOUT_USEC=` asks for: three ticks.
    public var timeoutExtension: Duration { tickInterval * 3 }

    public private(set) var phase: Phase = .checking
    private var failedChecks = 0
    private var lastFailure: String?
    private var sentReady = false
    /// The problem of a degraded server, until a check finds it healthy.
    public private(set) var degradedReason: String?

    public init(watchdogInterval: Duration?) {
        self.watchdogInterval = watchdogInterval
        if let interval = watchdogInterval {
            tickInterval = max(interval / 3, .milliseconds(500))
        } else {
            tickInterval = .seconds(5)
        }
    }

    /// Whether ticks do anything in the current phase; when not (running without a watchdog,
    /// or failed), the driver sleeps until the next phase change: no idle wake-ups.
    public var needsTicks: Bool {
        switch phase {
        case .ready: return watchdogInterval != nil || degradedReason != nil
        case .restarting, .maintenance, .external: return watchdogInterval != nil
        case .failed: return false
        case .checking, .initialisingCluster, .starting, .recovering, .seeding, .connecting: return !sentReady || watchdogInterval != nil
        case .stopping: return true
        }
    }

    /// Feeds one event; returns the actions to perform.
    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .phase(let next): return enter(next)
        case .tick: return tick()
        case .healthChecked(let healthy, let reason): return healthChecked(healthy: healthy, reason: reason)
        case .degraded(let reason, let checked): return degraded(reason: reason, checked: checked)
        }
    }

    private mutating func degraded(reason: String, checked: Bool) -> [Action] {
        guard case .ready = phase else { return [] }
        var actions: [Action] = []
        if reason != degradedReason {
            actions.append(.logWarning("\(reason); PostgreSQL keeps running, but writes fail until there is room"))
            actions.append(.notify([.status(ServicePhase.unhealthyText(reason))]))
            degradedReason = reason
        }
        if checked {
            failedChecks = 0
            lastFailure = nil
            if watchdogInterval != nil { actions.append(.notify([.watchdog])) }
        }
        return actions
    }

    private mutating func enter(_ next: Phase) -> [Action] {
        guard next != phase else { return [] }
        // Nothing follows a failure or comes back after stopping.
        if case .failed = phase { return [] }
        if phase == .stopping {
            guard case .failed = next else { return [] }
        }
        phase = next
        switch next {
        case .checking, .initialisingCluster, .starting, .recovering, .seeding, .maintenance, .restarting, .failed, .connecting:
            return [.notify([.status(next.statusText)])]
        case .ready, .external:
            failedChecks = 0
            lastFailure = nil
            var messages: [NotifyMessage] = [.status(next.statusText)]
            if !sentReady {
                messages.insert(.ready, at: 0)
                sentReady = true
            }
            // The first ping right away: the watchdog starts counting at READY=1.
            if watchdogInterval != nil { messages.append(.watchdog) }
            return [.notify(messages)]
        case .stopping: return [.notify([.stopping, .status(next.statusText)])]
        }
    }

    private func tick() -> [Action] {
        switch phase {
        case .external:
            // ampd itself is what the watchdog guards: a remote server that does not answer
            // is reported (status, journal), and restarting ampd would not bring it back.
            return watchdogInterval == nil ? [] : [.notify([.watchdog])]
        case .checking, .initialisingCluster, .starting, .recovering, .seeding, .maintenance, .restarting, .connecting:
            // Before READY=1 the start timeout applies: ask for more time. After it (ampd
            // restarting PostgreSQL), ampd itself is alive and bounds the restart with its own
            // start timeout and backoff, so it keeps the watchdog fed meanwhile.
            if sentReady { return watchdogInterval == nil ? [] : [.notify([.watchdog])] }
            return [.notify([.extendTimeout(timeoutExtension)])]
        case .stopping:
            return [.notify([.extendTimeout(timeoutExtension)])]
        case .ready:
            return watchdogInterval == nil && degradedReason == nil ? [] : [.checkHealth]
        case .failed:
            return []
        }
    }

    private mutating func healthChecked(healthy: Bool, reason: String) -> [Action] {
        if case .external(let server) = phase { return externalChecked(server: server, reachable: healthy, reason: reason) }
        guard case .ready(let url) = phase else { return [] }
        if healthy {
            var actions: [Action] = []
            if let reason = degradedReason {
                actions.append(.logNotice("resolved: \(reason)"))
                actions.append(.notify([.status(ServicePhase.ready(url: url).statusText)]))
                degradedReason = nil
            }
            if failedChecks > 0 {
                actions.append(.logNotice("PostgreSQL is healthy again after \(failedChecks) failed health check\(failedChecks == 1 ? "" : "s")"))
                actions.append(.notify([.status(ServicePhase.ready(url: url).statusText)]))
            }
            failedChecks = 0
            lastFailure = nil
            if watchdogInterval != nil { actions.append(.notify([.watchdog])) }
            return actions
        }
        failedChecks += 1
        var actions: [Action] = []
        if reason != lastFailure {
            // (ready: a local server)
            let interval = watchdogInterval.map { "\($0)" } ?? "the watchdog interval"
            actions.append(.logWarning(
                "health check failed: \(reason); the watchdog is not pinged, so systemd restarts the service if no check succeeds within \(interval)"))
            actions.append(.notify([.status(ServicePhase.unhealthyText(reason))]))
            lastFailure = reason
        }
        return actions
    }

    /// An external server's answer: the journal says when it becomes unreachable (once per
    /// reason) and reachable again; the watchdog is not involved (see ``tick()``).
    private mutating func externalChecked(server: String, reachable: Bool, reason: String) -> [Action] {
        if reachable {
            guard failedChecks > 0 else { return [] }
            let n = failedChecks
            failedChecks = 0
            lastFailure = nil
            return [.logNotice("the external server \(server) is reachable again (after \(n) failed check\(n == 1 ? "" : "s"))"),
                    .notify([.status(ServicePhase.external(server: server).statusText)])]
        }
        failedChecks += 1
        guard reason != lastFailure else { return [] }
        lastFailure = reason
        return [.logWarning("the external server \(server) is unreachable: \(reason); ampd keeps checking and says when it answers again"),
                .notify([.status(ServicePhase.unreachableText(server, reason))])]
    }
}
