import AmpSupervision
import Testing

@Suite("RestartPolicy and the restarting/degraded phases (pure)")
struct RestartPolicyTests {
    @Test("a crash after a stable run restarts after 0.1 s, every time")
    func stableCrashes() {
        var p = RestartPolicy()
        for n in 1...20 {
            #expect(p.handle(.exited(uptime: .seconds(2))) == .restart(after: .milliseconds(100), attempt: 1), "crash \(n)")
        }
        #expect(p.restarts == 20)
    }

    @Test("failures in a row double the delay up to 10 s, then give up after 8")
    func crashLoop() {
        var p = RestartPolicy()
        #expect(p.handle(.exited(uptime: .milliseconds(10))) == .restart(after: .milliseconds(100), attempt: 1))
        var delays: [Duration] = []
        for _ in 2...RestartPolicy.maximumFailuresInARow {
            guard case .restart(let d, _) = p.handle(.startFailed) else { Issue.record("gave up early"); return }
            delays.append(d)
        }
        #expect(delays == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .milliseconds(3200), .milliseconds(6400), .seconds(10)])
        #expect(p.handle(.startFailed) == .giveUp(failures: RestartPolicy.maximumFailuresInARow))
    }

    @Test("a stable run resets the streak")
    func reset() {
        var p = RestartPolicy()
        for _ in 0..<5 { _ = p.handle(.startFailed) }
        #expect(p.handle(.exited(uptime: .seconds(30))) == .restart(after: .milliseconds(100), attempt: 1))
    }

    func notified(_ actions: [NotifyStateMachine.Action]) -> [String] {
        actions.flatMap { action -> [String] in
            if case .notify(let m) = action { return m.map(\.assignment) }
            return []
        }
    }

    @Test("restarting after ready: STATUS says so, no second READY=1, ticks feed the watchdog instead of extending the start timeout")
    func restartingPhase() {
        var m = NotifyStateMachine(watchdogInterval: .seconds(30))
        _ = m.handle(.phase(.ready(url: "u")))
        #expect(notified(m.handle(.phase(.restarting(restart: 1, reason: "killed")))) == ["STATUS=restarting PostgreSQL (restart 1): killed"])
        #expect(notified(m.handle(.tick)) == ["WATCHDOG=1"])
        _ = m.handle(.phase(.starting))
        #expect(notified(m.handle(.tick)) == ["WATCHDOG=1"], "after READY=1 the start timeout no longer applies")
        #expect(notified(m.handle(.phase(.ready(url: "u")))) == ["STATUS=ready: u", "WATCHDOG=1"])
    }

    @Test("degraded (disk full): STATUS unhealthy once, watchdog still fed by checks, ticks even without a watchdog, cleared by a healthy check")
    func degraded() {
        var m = NotifyStateMachine(watchdogInterval: nil)
        _ = m.handle(.phase(.ready(url: "u")))
        #expect(!m.needsTicks)
        #expect(notified(m.handle(.degraded(reason: "disk full on /p", checked: false))) == ["STATUS=unhealthy: disk full on /p"])
        #expect(m.needsTicks, "checks until it is resolved")
        #expect(m.handle(.tick) == [.checkHealth])
        #expect(notified(m.handle(.degraded(reason: "disk full on /p", checked: true))).isEmpty, "said once")
        #expect(notified(m.handle(.healthChecked(healthy: true, reason: ""))) == ["STATUS=ready: u"])
        #expect(!m.needsTicks && m.degradedReason == nil)

        var w = NotifyStateMachine(watchdogInterval: .seconds(30))
        _ = w.handle(.phase(.ready(url: "u")))
        #expect(notified(w.handle(.degraded(reason: "disk full", checked: true))) == ["STATUS=unhealthy: disk full", "WATCHDOG=1"])
    }
}
