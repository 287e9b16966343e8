import AmpProtocol
import Synchronization
import ThreadSupport

/// Work that needs PostgreSQL stopped (a snapshot, a restore), handed from the varlink handler
/// to the service that owns the server: the service stops PostgreSQL, runs the job on the data
/// directory, starts PostgreSQL again (``AmpdService``), and the caller gets the job's result.
struct MaintenanceJob: Sendable {
    /// The status text while it runs (`STATUS=`, GetStatus's phase).
    var description: String
    /// Runs with PostgreSQL stopped; returns what to do once PostgreSQL is up again (or not).
    var work: @Sendable () async -> MaintenanceStep
    let result = OneShot<Result<Void, MetadbError>>()
}

/// What a job leaves for after the restart.
struct MaintenanceStep: Sendable {
    /// The job's own outcome so far (nil: succeeded).
    var failure: MetadbError?
    /// Whether the seed scripts run once PostgreSQL is up (a reset with seeds); when one fails,
    /// ``afterStart`` is called with false.
    var reseed = false
    /// Whether the job made a new cluster (a reset): the baseline extensions are created and
    /// the ready line printed again.
    var recreated = false
    /// Called with whether PostgreSQL came up again (and seeded, when asked): a restore or a
    /// reset keeps the old cluster until then.
    var afterStart: @Sendable (Bool) async -> MetadbError? = { _ in nil }
}

/// The queue between the varlink handler and the service: one job at a time, in order.
final class MaintenanceQueue: Sendable {
    private let stream: AsyncStream<MaintenanceJob>
    private let continuation: AsyncStream<MaintenanceJob>.Continuation
    private let open = Mutex(true)

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: MaintenanceJob.self)
    }

    /// Hands `job` to the service and waits for its result.
    func perform(_ job: MaintenanceJob) async -> Result<Void, MetadbError> {
        guard open.withLock({ $0 }) else { return .failure(.notReady(state: "stopping", phase: "ampd is stopping")) }
        continuation.yield(job)
        return await job.result.wait()
    }

    /// The next job; nil once the queue is closed or the task is cancelled.
    func next() async -> MaintenanceJob? {
        var iterator = stream.makeAsyncIterator()
        return await iterator.next()
    }

    /// No more jobs: anything still queued fails.
    func close() {
        open.withLock { $0 = false }
        continuation.finish()
    }
}
