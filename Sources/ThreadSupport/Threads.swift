#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CThreads
import Dispatch
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

    /// Resolves the race with `outcome` after `delay` unless it was resolved before.
    public func resolve(_ outcome: Outcome, after delay: Duration) {
        let (seconds, attoseconds) = delay.components
        // Checked: a delay beyond ~292 years is "never" rather than an overflow trap.
        let (whole, overflow) = Int(clamping: seconds).multipliedReportingOverflow(by: 1_000_000_000)
        let nanos = overflow ? Int.max / 2 : whole.addingReportingOverflow(Int(attoseconds / 1_000_000_000)).partialValue
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(max(0, nanos))) { [shot] in
            shot.fulfil(outcome)
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
    let race = Race<Void>()
    race.resolve((), after: delay)
    await race.wait()
}

/// The number of CPUs in this thread's affinity mask (sched_getaffinity(2)), nil when unknown.
public func affinityCPUCount() -> Int? {
    let n = Int(amp_affinity_cpu_count())
    return n > 0 ? n : nil
}
