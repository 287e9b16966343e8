#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import ThreadSupport

/// The threads of this process named `name` (`/proc/self/task/*/comm`); other tests run in
/// parallel, so only names of one's own count.
func threadCount(named name: String) -> Int {
    guard let dir = opendir("/proc/self/task") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while let entry = readdir(dir) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard tid != ".", tid != "..", let f = fopen("/proc/self/task/\(tid)/comm", "r") else { continue }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 32)
        if fgets(&buffer, 32, f) != nil, String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == name { n += 1 }
    }
    return n
}

@Suite("ThreadSupport: timed races and worker threads end with their owner", .serialized)
struct ThreadSupportTests {
    @Test("a timed wait gives the timeout's outcome, ends early when resolved, and leaves no thread behind")
    func timedWait() async {
        let timedOut = await Race<Int>().wait(orAfter: .milliseconds(50), 7)
        #expect(timedOut == 7)
        let race = Race<Int>()
        let clock = ContinuousClock()
        let took = await clock.measure {
            async let result = race.wait(orAfter: .seconds(60), 0)
            try? await Task.sleep(for: .milliseconds(20))
            race.resolve(3)
            #expect(await result == 3)
        }
        #expect(took < .seconds(5), "resolved, not timed out: \(took)")
        // 50 waits of a minute each, each resolved at once: their timer threads end with them
        // (a leak would leave 50 threads asleep for a minute).
        for n in 0..<50 {
            let early = Race<Int>()
            async let got = early.wait(orAfter: .seconds(60), -1, timerName: "amp-test-timer")
            try? await Task.sleep(for: .milliseconds(2))
            early.resolve(n)
            #expect(await got == n)
        }
        // (A thread that has done its work takes a moment to be gone from /proc.)
        for _ in 0..<200 where threadCount(named: "amp-test-timer") > 0 { usleep(5000) }
        #expect(threadCount(named: "amp-test-timer") == 0, "timer threads left: \(threadCount(named: "amp-test-timer"))")
    }

    @Test("a timed wait runs to its timeout in a cancelled task, unless it says what cancellation means")
    func cancelled() async {
        let task = Task {
            await Race<Int>().wait(orAfter: .milliseconds(200), 1)
        }
        task.cancel()
        #expect(await task.value == 1)
        let early = Task {
            await Race<Int>().wait(orAfter: .seconds(60), 1, onCancel: 2)
        }
        early.cancel()
        #expect(await early.value == 2)
    }

    @Test("a worker runs one job at a time, refuses another while busy, and is joined by stop()")
    func worker() async throws {
        let worker = try WorkerThread(name: "amp-test-worker")
        #expect(threadCount(named: "amp-test-worker") == 0, "no thread before the first job")
        let started = Race<Void>()
        let done = Race<Int>()
        #expect(worker.submit {
            started.resolve(())
            while !gateOpen.withLock({ $0 }) { usleep(1000) }
            done.resolve(42)
        })
        await started.wait()
        #expect(threadCount(named: "amp-test-worker") == 1)
        #expect(!worker.submit { done.resolve(0) }, "busy: refused")
        gateOpen.withLock { $0 = true }
        #expect(await done.wait() == 42)
        try await Task.sleep(for: .milliseconds(20))
        let again = Race<Int>()
        #expect(worker.submit { again.resolve(5) })
        #expect(await again.wait() == 5)
        worker.stop()
        #expect(threadCount(named: "amp-test-worker") == 0, "joined (pthread_join returned: the thread is gone)")
        #expect(!worker.submit {}, "stopped: refused")
    }
}

let gateOpen = Mutex(false)
