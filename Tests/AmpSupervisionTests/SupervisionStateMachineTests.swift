import AmpSupervision
import Testing

@Suite("supervision state machine (pure: events in, actions out)")
struct SupervisionStateMachineTests {
    typealias M = SupervisionStateMachine

    @Test("first start: seeds only for a new cluster, then ready and serving; a failed first start or seed aborts")
    func firstStart() {
        var m = M(hasSeeds: true)
        #expect(m.begin() == [.start])
        #expect(m.handle(.started(created: true)) == [.seed(first: true)])
        #expect(m.handle(.seeded(problem: nil)) == [.announce(created: true), .serve])

        var existing = M(hasSeeds: true)
        _ = existing.begin()
        #expect(existing.handle(.started(created: false)) == [.announce(created: false), .serve])

        var failing = M(hasSeeds: false)
        _ = failing.begin()
        #expect(failing.handle(.startFailed("no binaries")) == [.abort])
        #expect(failing.isDone)

        var badSeed = M(hasSeeds: true)
        _ = badSeed.begin()
        _ = badSeed.handle(.started(created: true))
        #expect(badSeed.handle(.seeded(problem: "line 3")) == [.abort])
    }

    @Test("an exit restarts after the policy's delay; restarts that keep failing give up after eight in a row")
    func restarts() {
        var served = M(hasSeeds: false)
        _ = served.begin()
        _ = served.handle(.started(created: false))
        #expect(served.handle(.exited("killed", uptime: .seconds(5))) == [.wait(.milliseconds(100), restart: 1, reason: "killed")])
        #expect(served.handle(.waited) == [.start])
        #expect(served.handle(.started(created: false)) == [.restarted(restart: 1), .serve])
        // A crash loop: it exits at once, then each start fails; the delay doubles, up to 10 s.
        var m = M(hasSeeds: false)
        _ = m.begin()
        _ = m.handle(.started(created: false))
        var actions = m.handle(.exited("killed", uptime: .milliseconds(10)))
        var delays: [Duration] = []
        while case .wait(let delay, _, _)? = actions.first {
            delays.append(delay)
            #expect(m.handle(.waited) == [.start])
            actions = m.handle(.startFailed("crash"))
        }
        #expect(delays.count == RestartPolicy.maximumFailuresInARow, "\(delays)")
        #expect(delays.first == .milliseconds(100) && delays.last == .seconds(10))
        #expect(actions == [.giveUp("PostgreSQL keeps failing: crash; gave up after 8 restarts in a row")])
        #expect(m.isDone)
    }

    @Test("maintenance: the job runs with the server stopped, then a start; seeds when asked; a failed start or seed undoes the job and starts again")
    func maintenance() {
        var m = M(hasSeeds: true)
        _ = m.begin()
        _ = m.handle(.started(created: false))
        #expect(m.handle(.maintenanceRequested) == [.runJob])
        #expect(m.handle(.jobWorked(reseed: false)) == [.start])
        #expect(m.handle(.started(created: false)) == [.finishJob, .serve])

        _ = m.handle(.maintenanceRequested)
        _ = m.handle(.jobWorked(reseed: true))
        #expect(m.handle(.started(created: true)) == [.seed(first: false)])
        #expect(m.handle(.seeded(problem: "bad seed")) == [.stopServer, .undoJob, .start])
        #expect(m.handle(.started(created: false)) == [.failJob("bad seed"), .serve])

        _ = m.handle(.maintenanceRequested)
        _ = m.handle(.jobWorked(reseed: false))
        #expect(m.handle(.startFailed("restored cluster does not start")) == [.undoJob, .start])
        #expect(m.handle(.started(created: false)) == [.failJob("restored cluster does not start"), .serve])

        // The start after an undo fails too: the end, with that error.
        _ = m.handle(.maintenanceRequested)
        _ = m.handle(.jobWorked(reseed: false))
        _ = m.handle(.startFailed("x"))
        #expect(m.handle(.startFailed("y")) == [.abort])
    }

    @Test("a stop request ends every state once; unexpected events are ignored")
    func stop() {
        var m = M(hasSeeds: false)
        _ = m.begin()
        #expect(m.handle(.waited) == [])
        #expect(m.handle(.stopRequested) == [.end])
        #expect(m.handle(.stopRequested) == [])
        #expect(m.begin() == [])
    }
}
