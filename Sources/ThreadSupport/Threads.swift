#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSocket
import CThreads
import Synchronization

/// A thread could not be created (`pthread_create` failed, even after retrying EAGAIN).
public struct ThreadStartError: Error, Sendable, CustomStringConvertible {
    public let name: String
    public let errno: Int32
    public var description: String { "cannot start thread \(name): \(String(cString: strerror(errno)))" }
}

/// Runs `body` on a new, detached OS thread, or throws when no thread can be made.
///
/// Blocking waits (`waitid`, `read`, `poll`) live on their own threads so that they never
/// occupy the Swift concurrency pool and never wake up unless something happens.
/// The thread ends when `body` returns. There is deliberately no fallback to a shared pool:
/// a thread that forks a child with `PR_SET_PDEATHSIG` must live exactly as long as the
/// child, which a pool thread does not; callers decide what to do instead.
public func startDetachedThread(name: String, _ body: @escaping @Sendable () -> Void) throws(ThreadStartError) {
    final class Box: @unchecked Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
    let box = Unmanaged.passRetained(Box(name: name, body: body))
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    // Blocking helpers need little stack.
    pthread_attr_setstacksize(&attributes, 256 * 1024)
    defer { pthread_attr_destroy(&attributes) }
    var rc: Int32 = 0
    // EAGAIN (a transient thread or memory limit): a few retries, 1 ms, 10 ms, 100 ms apart.
    for delay: UInt32 in [0, 1_000, 10_000, 100_000] {
        if delay > 0 { usleep(delay) }
        var thread = pthread_t()
        rc = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            let box = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue()
            amp_set_thread_name(box.name)
            box.body()
            return nil
        }, box.toOpaque())
        if rc == 0 { return }
        if rc != EAGAIN { break }
    }
    box.release()
    throw ThreadStartError(name: name, errno: rc)
}

/// A value delivered at most once, to any number of waiters, from any thread.
///
/// The first `fulfil` wins; later ones are ignored. Waiters that arrive after it get the value at once.
public final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [CheckedContinuation<Value, Never>] = []
        var observers: [@Sendable (Value) -> Void] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Delivers `value` unless a value was already delivered. Returns whether this call won.
    @discardableResult
    public func fulfil(_ value: Value) -> Bool {
        let pending: ([CheckedContinuation<Value, Never>], [@Sendable (Value) -> Void])? = state.withLock { s in
            guard s.value == nil else { return nil }
            s.value = value
            defer { s.waiters = []; s.observers = [] }
            return (s.waiters, s.observers)
        }
        guard let (waiters, observers) = pending else { return false }
        for w in waiters { w.resume(returning: value) }
        for o in observers { o(value) }
        return true
    }

    /// Calls `body` with the value once it is delivered (at once, on this thread, if it
    /// already was; otherwise on the delivering thread). `body` must not block.
    public func onFulfil(_ body: @escaping @Sendable (Value) -> Void) {
        let ready: Value? = state.withLock { s in
            if let v = s.value { return v }
            s.observers.append(body)
            return nil
        }
        if let ready { body(ready) }
    }

    /// The value, if delivered.
    public var value: Value? { state.withLock { $0.value } }

    /// Waits for the value. Not cancellable: use ``value(timeout:)`` or a race for that.
    public func wait() async -> Value {
        await withCheckedContinuation { (c: CheckedContinuation<Value, Never>) in
            let ready: Value? = state.withLock { s in
                if let v = s.value { return v }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

/// Races sources of an outcome: the first `resolve` ends `wait`. Timers, callbacks from
/// other threads and task cancellation can all resolve it; no unstructured task is involved.
public final class Race<Outcome: Sendable>: Sendable {
    private let shot = OneShot<Outcome>()

    public init() {}

    /// Resolves the race with `outcome` unless it was already resolved.
    @discardableResult
    public func resolve(_ outcome: Outcome) -> Bool { shot.fulfil(outcome) }

    /// Waits for the first outcome, or `outcome` once `delay` has passed. Runs to its end even
    /// in a cancelled task unless `onCancel` is given (so it can bound waits during shutdown).
    ///
    /// The timer is a thread of its own that polls an eventfd; whoever resolves the race
    /// wakes it, and this call waits for it to end before returning: nothing outlives the
    /// call, and no shared queue is involved.
    /// `timerName` names the timer's thread (as `top -H` shows it).
    public func wait(orAfter delay: Duration, _ outcome: Outcome, onCancel: Outcome? = nil, timerName: String = "amp-timer") async -> Outcome {
        if let resolved = shot.value { return resolved }
        let wake = EventDescriptor()
        let timerEnded = OneShot<Void>()
        guard let wake else { return await sleepingWait(delay, outcome, onCancel: onCancel) }
        shot.onFulfil { _ in wake.signal() }
        let deadline = ContinuousClock.now + delay
        do {
            try startDetachedThread(name: timerName) { [shot] in
                if wake.wait(until: deadline) == false { shot.fulfil(outcome) }
                timerEnded.fulfil(())
            }
        } catch {
            return await sleepingWait(delay, outcome, onCancel: onCancel)
        }
        let result = await wait(onCancel: onCancel)
        await timerEnded.wait()
        return result
    }

    /// The fallback without a thread: a child task that sleeps (ends early when cancelled).
    private func sleepingWait(_ delay: Duration, _ outcome: Outcome, onCancel: Outcome?) async -> Outcome {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [shot] in
                try? await Task.sleep(for: delay)
                shot.fulfil(outcome)
            }
            let result = await wait(onCancel: onCancel)
            group.cancelAll()
            return result
        }
    }

    /// Waits for the first outcome; when the calling task is cancelled, `onCancel` resolves it.
    public func wait(onCancel: Outcome? = nil) async -> Outcome {
        guard let onCancel else { return await shot.wait() }
        return await withTaskCancellationHandler {
            await shot.wait()
        } onCancel: { [shot] in
            shot.fulfil(onCancel)
        }
    }
}

/// Runs blocking `body` on a thread of its own and awaits its result: for blocking calls
/// (sockets, libpq, flock) that must not occupy the Swift concurrency pool.
///
/// When no thread can be made, `body` runs on the calling thread instead (it blocks a pool
/// thread for its duration, but the work is not lost; none of these bodies forks).
public func runOnThread<T: Sendable>(name: String = "amp-blocking", _ body: @escaping @Sendable () -> T) async -> T {
    let shot = OneShot<T>()
    do {
        try startDetachedThread(name: name) { shot.fulfil(body()) }
    } catch {
        return body()
    }
    return await shot.wait()
}

/// Sleeps for `delay` even if the task is cancelled: for bounded waits during shutdown.
public func uncancellableSleep(for delay: Duration) async {
    await Race<Void>().wait(orAfter: delay, ())
}

/// An eventfd: one thread waits on it with a deadline, others wake it. Closed when the last
/// reference (the waiter's or a waker's) is gone, so a late wake never writes to a reused
/// descriptor.
final class EventDescriptor: Sendable {
    let fd: Int32

    init?() {
        fd = amp_eventfd()
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    func signal() { amp_eventfd_signal(fd) }

    /// Waits until signalled (true) or until `deadline` (false).
    func wait(until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return false }
            let (seconds, attoseconds) = left.components
            let ms = seconds > 86_400 ? Int32(86_400_000) : Int32(seconds) * 1000 + Int32((attoseconds / 1_000_000_000_000_000) + 1)
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 1, ms)
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { return false }
        }
    }
}

/// A thread that runs submitted jobs one at a time, owned by whoever made it: ``stop()`` ends
/// it and joins it. For blocking work whose answer may come too late to wait for (a query on
/// a hung server): ``submit(_:)`` refuses a job while one still runs, so a hang costs one
/// thread, never a pile of them. The thread starts with the first job (an idle daemon that is
/// never asked keeps no thread for it).
public final class WorkerThread: Sendable {
    private struct State {
        var job: (@Sendable () -> Void)? = nil
        var busy = false
        var stopping = false
        var thread: pthread_t? = nil
    }
    private let state = Mutex(State())
    private let wake: EventDescriptor
    public let name: String

    public init(name: String) throws(ThreadStartError) {
        self.name = name
        guard let wake = EventDescriptor() else { throw ThreadStartError(name: name, errno: errno) }
        self.wake = wake
    }

    /// Starts the thread (called with the state locked, once).
    private func startThread() -> pthread_t? {
        final class Box: @unchecked Sendable {
            let worker: WorkerThread
            init(_ worker: WorkerThread) { self.worker = worker }
        }
        let box = Unmanaged.passRetained(Box(self))
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { raw in
            guard let raw else { return nil }
            let worker = Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().worker
            amp_set_thread_name(worker.name)
            worker.loop()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            return nil
        }
        return t
    }

    private func loop() {
        while true {
            let next: (@Sendable () -> Void)?? = state.withLock { s in
                if s.stopping { return .some(nil) }
                return s.job.map { job in s.job = nil; return job }
            }
            switch next {
            case .some(nil): return
            case .some(let job?):
                job()
                state.withLock { $0.busy = false }
            case .none:
                _ = wake.wait(until: ContinuousClock.now + .seconds(3600))
                amp_eventfd_drain(wake.fd)
            }
        }
    }

    /// Runs `job` on the thread; false (and `job` not run) while another job runs or after ``stop()``.
    @discardableResult
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        let taken = state.withLock { s -> Bool in
            guard !s.busy, !s.stopping else { return false }
            if s.thread == nil {
                guard let t = startThread() else { return false }
                s.thread = t
            }
            s.busy = true
            s.job = job
            return true
        }
        if taken { wake.signal() }
        return taken
    }

    /// Ends the thread after the job it runs, and joins it.
    public func stop() {
        let thread = state.withLock { s -> pthread_t? in
            s.stopping = true
            defer { s.thread = nil }
            return s.thread
        }
        wake.signal()
        if let thread { pthread_join(thread, nil) }
    }
}

/// The number of CPUs in this thread's affinity mask (sched_getaffinity(2)), nil when unknown.
public func affinityCPUCount() -> Int? {
    let n = Int(amp_affinity_cpu_count())
    return n > 0 ? n : nil
}
