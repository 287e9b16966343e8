/// What ampd does with its PostgreSQL from the first start to the end, as a pure state
/// machine (events in, actions out, no I/O; the driver is `AmpdService`):
///
/// - the first start, then the seed scripts when it made a new cluster, then serving;
/// - an exit of PostgreSQL while serving: a restart after the delay the ``RestartPolicy``
///   gives, or giving up after too many failures in a row;
/// - a maintenance job (snapshot, restore, reset): PostgreSQL stopped, the job's work, a start
///   (and the seeds, for a reset that asks for them); when that start or those seeds fail, the
///   job is undone and PostgreSQL started once more;
/// - a stop request, in any state: the end.
public struct SupervisionStateMachine: Sendable {
    public enum Event: Sendable, Equatable {
        /// PostgreSQL answers after a start; `created`: the start made a new cluster.
        case started(created: Bool)
        /// A start failed, for `reason`.
        case startFailed(String)
        /// The seed scripts ran: nil, or the first problem.
        case seeded(problem: String?)
        /// PostgreSQL exited on its own after serving for `uptime`.
        case exited(String, uptime: Duration)
        /// A maintenance job came while serving.
        case maintenanceRequested
        /// The job's work ran with PostgreSQL stopped; `reseed`: it asks for the seed scripts.
        case jobWorked(reseed: Bool)
        /// The delay before a restart is over.
        case waited
        /// A stop request (SIGTERM, SIGINT) came.
        case stopRequested
    }

    public enum Action: Sendable, Equatable {
        /// Start PostgreSQL, then report ``Event/started(created:)``, ``Event/startFailed(_:)``
        /// or ``Event/stopRequested``.
        case start
        /// Run the seed scripts; `first`: of the first start (a failure there ends ampd, and
        /// the half-seeded cluster goes), else of a job (a failure undoes the job).
        case seed(first: Bool)
        /// Say PostgreSQL is ready for the first time (the ready line, the extensions of a new cluster).
        case announce(created: Bool)
        /// Say a restart worked.
        case restarted(restart: Int)
        /// Serve until PostgreSQL exits, a maintenance job comes, or a stop request.
        case serve
        /// Stop PostgreSQL and run the job's work.
        case runJob
        /// The job succeeded: tell its caller.
        case finishJob
        /// Stop the server that started for the job (its seeds failed).
        case stopServer
        /// Undo the job (the previous cluster goes back), before a start.
        case undoJob
        /// The job failed for `reason` (the previous cluster is back): tell its caller.
        case failJob(String)
        /// Wait `delay` before restart number `restart`, and report ``Event/waited``.
        case wait(Duration, restart: Int, reason: String)
        /// PostgreSQL keeps failing: end with this message.
        case giveUp(String)
        /// The first start (or the start after an undone job) failed: end with its error.
        case abort
        /// End (a stop request).
        case end
    }

    enum Purpose: Sendable, Equatable {
        case first, restart, afterJob(reseed: Bool), afterUndo(String)
    }

    enum State: Sendable, Equatable {
        case idle
        case starting(Purpose)
        case seeding(Purpose)
        case serving
        case maintenance
        case waiting
        case done
    }

    private(set) var state = State.idle
    public private(set) var policy = RestartPolicy()
    /// Whether seed scripts are configured.
    public let hasSeeds: Bool

    public init(hasSeeds: Bool) { self.hasSeeds = hasSeeds }

    /// Whether the machine has ended.
    public var isDone: Bool { state == .done }

    /// The first actions.
    public mutating func begin() -> [Action] {
        guard state == .idle else { return [] }
        state = .starting(.first)
        return [.start]
    }

    public mutating func handle(_ event: Event) -> [Action] {
        if event == .stopRequested {
            guard state != .done else { return [] }
            state = .done
            return [.end]
        }
        switch (state, event) {
        case (.starting(.first), .started(let created)):
            if created && hasSeeds {
                state = .seeding(.first)
                return [.seed(first: true)]
            }
            state = .serving
            return [.announce(created: created), .serve]
        case (.starting(.first), .startFailed), (.starting(.afterUndo), .startFailed):
            state = .done
            return [.abort]
        case (.seeding(.first), .seeded(let problem)):
            guard problem == nil else {
                state = .done
                return [.abort]
            }
            state = .serving
            return [.announce(created: true), .serve]

        case (.serving, .exited(let reason, let uptime)):
            return decide(policy.handle(.exited(uptime: uptime)), reason: reason)
        case (.waiting, .waited):
            state = .starting(.restart)
            return [.start]
        case (.starting(.restart), .started):
            state = .serving
            return [.restarted(restart: policy.restarts), .serve]
        case (.starting(.restart), .startFailed(let reason)):
            return decide(policy.handle(.startFailed), reason: reason)

        case (.serving, .maintenanceRequested):
            state = .maintenance
            return [.runJob]
        case (.maintenance, .jobWorked(let reseed)):
            state = .starting(.afterJob(reseed: reseed))
            return [.start]
        case (.starting(.afterJob(let reseed)), .started):
            if reseed && hasSeeds {
                state = .seeding(.afterJob(reseed: true))
                return [.seed(first: false)]
            }
            state = .serving
            return [.finishJob, .serve]
        case (.starting(.afterJob), .startFailed(let reason)):
            state = .starting(.afterUndo(reason))
            return [.undoJob, .start]
        case (.seeding(.afterJob), .seeded(let problem)):
            guard let problem else {
                state = .serving
                return [.finishJob, .serve]
            }
            state = .starting(.afterUndo(problem))
            return [.stopServer, .undoJob, .start]
        case (.starting(.afterUndo(let reason)), .started):
            state = .serving
            return [.failJob(reason), .serve]

        default:
            // An event this state does not expect (a driver's mistake): ignored.
            return []
        }
    }

    private mutating func decide(_ decision: RestartPolicy.Decision, reason: String) -> [Action] {
        switch decision {
        case .restart(let delay, _):
            state = .waiting
            return [.wait(delay, restart: policy.restarts, reason: reason)]
        case .giveUp:
            state = .done
            return [.giveUp("PostgreSQL keeps failing: \(reason); gave up after \(RestartPolicy.maximumFailuresInARow) restarts in a row")]
        }
    }
}
