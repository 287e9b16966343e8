import AmpProtocol
import AmpSupervision
import AmpSystemd
import Testing

@Suite("NotifyStateMachine (pure)")
struct NotifyStateMachineTests {
    func notified(_ actions: [NotifyStateMachine.Action]) -> [String] {
        actions.flatMap { action -> [String] in
            if case .notify(let m) = action { return m.map(\.assignment) }
            return []
        }
    }

    @Test func startUpReportsEveryPhaseAndReadyOnce() {
        var m = NotifyStateMachine(watchdogInterval: nil)
        #expect(notified(m.handle(.phase(.initialisingCluster))) == ["STATUS=initialising cluster (initdb)"])
        #expect(notified(m.handle(.phase(.starting))) == ["STATUS=starting PostgreSQL"])
        #expect(notified(m.handle(.phase(.ready(url: "postgresql:///postgres?host=%2Ftmp")))) == [
            "READY=1", "STATUS=ready: postgresql:///postgres?host=%2Ftmp",
        ])
        #expect(notified(m.handle(.phase(.stopping))) == ["STOPPING=1", "STATUS=stopping"])
        // Nothing after stopping except a failure.
        #expect(m.handle(.phase(.starting)).isEmpty)
        #expect(notified(m.handle(.phase(.failed("boom")))) == ["STATUS=failed: boom"])
        #expect(m.handle(.phase(.ready(url: "x"))).isEmpty)
    }

    @Test func extendsTimeoutsOnlyWhileStartingOrStopping() {
        var m = NotifyStateMachine(watchdogInterval: nil)
        #expect(m.tickInterval == .seconds(5))
        for phase: NotifyStateMachine.Phase in [.checking, .initialisingCluster, .starting, .recovering] {
            _ = m.handle(.phase(phase))
            #expect(notified(m.handle(.tick)) == ["EXTEND_TIMEOUT_USEC=15000000"], "phase \(phase)")
        }
        _ = m.handle(.phase(.ready(url: "u")))
        #expect(m.handle(.tick).isEmpty, "no watchdog: nothing to do while running")
        _ = m.handle(.phase(.stopping))
        #expect(notified(m.handle(.tick)) == ["EXTEND_TIMEOUT_USEC=15000000"])
    }

    @Test func watchdogPingsOnlyAfterASuccessfulCheck() {
        var m = NotifyStateMachine(watchdogInterval: .seconds(30))
        #expect(m.tickInterval == .seconds(10))
        // Ticks before READY never ping.
        #expect(!notified(m.handle(.tick)).contains("WATCHDOG=1"))
        #expect(notified(m.handle(.phase(.ready(url: "u")))) == ["READY=1", "STATUS=ready: u", "WATCHDOG=1"])
        // A tick asks for a check, and never pings by itself.
        #expect(m.handle(.tick) == [.checkHealth])
        #expect(notified(m.handle(.healthChecked(healthy: true, reason: ""))) == ["WATCHDOG=1"])
        // Failed checks: no ping, one warning per distinct reason, status says why.
        let failed = m.handle(.healthChecked(healthy: false, reason: "the postmaster (PID 7) is stopped"))
        #expect(!notified(failed).contains("WATCHDOG=1"))
        #expect(notified(failed) == ["STATUS=unhealthy: the postmaster (PID 7) is stopped"])
        #expect(failed.contains { if case .logWarning(let t) = $0 { t.contains("PID 7") } else { false } })
        #expect(m.handle(.healthChecked(healthy: false, reason: "the postmaster (PID 7) is stopped")).isEmpty)
        #expect(m.handle(.tick) == [.checkHealth])
        // Recovery: ping again, say so, status back to ready.
        let recovered = m.handle(.healthChecked(healthy: true, reason: ""))
        #expect(notified(recovered) == ["STATUS=ready: u", "WATCHDOG=1"])
        #expect(recovered.contains { if case .logNotice(let t) = $0 { t.contains("after 2 failed health checks") } else { false } })
    }

    @Test func noPingsOnceStopping() {
        var m = NotifyStateMachine(watchdogInterval: .seconds(3))
        #expect(m.tickInterval == .seconds(1))
        _ = m.handle(.phase(.ready(url: "u")))
        #expect(m.handle(.tick) == [.checkHealth])
        _ = m.handle(.phase(.stopping))
        // A check that was running when shutdown began does not ping.
        #expect(m.handle(.healthChecked(healthy: true, reason: "")).isEmpty)
        #expect(!notified(m.handle(.tick)).contains("WATCHDOG=1"))
    }

    @Test func shortWatchdogIntervalsAreClamped() {
        let m = NotifyStateMachine(watchdogInterval: .milliseconds(600))
        #expect(m.tickInterval == .milliseconds(500))
    }

    @Test func notifyMessagesAreSingleLines() {
        #expect(NotifyMessage.status("a\nb").assignment == "STATUS=a b")
        #expect(NotifyMessage.extendTimeout(.milliseconds(1500)).assignment == "EXTEND_TIMEOUT_USEC=1500000")
        #expect(NotifyMessage.errno(22).assignment == "ERRNO=22")
    }
    @Test("external server: READY on the first answer; unreachable and reachable again are logged once; the watchdog keeps ampd's pings")
    func externalServer() {
        var m = NotifyStateMachine(watchdogInterval: .seconds(3))
        #expect(notified(m.handle(.phase(.connecting(server: "db:5432")))) == ["STATUS=connecting to the external server db:5432"])
        #expect(notified(m.handle(.phase(.external(server: "db:5432")))) == ["READY=1", "STATUS=external server db:5432: reachable", "WATCHDOG=1"])
        #expect(m.needsTicks)
        #expect(notified(m.handle(.tick)) == ["WATCHDOG=1"], "ticks ping without a health gate")
        let down = m.handle(.healthChecked(healthy: false, reason: "connection refused"))
        #expect(down.contains { if case .logWarning(let t) = $0 { return t.contains("db:5432 is unreachable: connection refused") }; return false })
        #expect(notified(down) == ["STATUS=external server db:5432: unreachable: connection refused"])
        #expect(m.handle(.healthChecked(healthy: false, reason: "connection refused")).isEmpty, "the same reason is said once")
        #expect(notified(m.handle(.tick)) == ["WATCHDOG=1"], "an unreachable remote does not starve the watchdog")
        let up = m.handle(.healthChecked(healthy: true, reason: ""))
        #expect(up.contains { if case .logNotice(let t) = $0 { return t.contains("reachable again (after 2 failed checks)") }; return false })
        #expect(notified(up) == ["STATUS=external server db:5432: reachable"])
        #expect(m.handle(.healthChecked(healthy: true, reason: "")).isEmpty)
        #expect(ServicePhase.external(server: "x").state == .external && ServicePhase.connecting(server: "x").state == .starting)
    }
}

@Suite("Journal fields (pure)")
struct JournalFieldTests {
    @Test func fieldNamesAreValidJournalFields() {
        #expect(JournalLogHandler.fieldName("pg_severity") == "PG_SEVERITY")
        #expect(JournalLogHandler.fieldName("amp.project-name") == "AMP_PROJECT_NAME")
        #expect(JournalLogHandler.fieldName("_SYSTEMD_UNIT") == "SYSTEMD_UNIT", "a leading _ is reserved for trusted fields")
        #expect(JournalLogHandler.fieldName("1x") == "F1X")
        #expect(JournalLogHandler.fieldName(String(repeating: "a", count: 80)).count == 64)
    }

    @Test func prioritiesFollowSyslog() {
        #expect(JournalLogHandler.priority(.debug) == 7)
        #expect(JournalLogHandler.priority(.info) == 6)
        #expect(JournalLogHandler.priority(.notice) == 5)
        #expect(JournalLogHandler.priority(.warning) == 4)
        #expect(JournalLogHandler.priority(.error) == 3)
        #expect(JournalLogHandler.priority(.critical) == 2)
    }
}

@Suite("NotifyStateMachine idle (pure)")
struct NotifyIdleTests {
    @Test func ticksOnlyWhenThereIsWork() {
        var m = NotifyStateMachine(watchdogInterval: nil)
        #expect(m.needsTicks, "starting: extend timeouts")
        _ = m.handle(.phase(.ready(url: "u")))
        #expect(!m.needsTicks, "ready without a watchdog: no wake-ups")
        _ = m.handle(.phase(.stopping))
        #expect(m.needsTicks)
        var w = NotifyStateMachine(watchdogInterval: .seconds(30))
        _ = w.handle(.phase(.ready(url: "u")))
        #expect(w.needsTicks, "ready with a watchdog: health checks")
    }
}
