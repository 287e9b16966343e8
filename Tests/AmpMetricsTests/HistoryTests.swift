@testable import AmpMetrics
import Testing

struct Point: TimedSample, Equatable {
    var time: Double
}

@Suite("history: the bounded ring, sparklines and rates (pure)")
struct HistoryTests {
    @Test("every sample of the last hour, one a minute for the day before, never more than 2160; since filters; older times are ignored")
    func ring() {
        var r = HistoryRing<Point>()
        for i in 0..<(2 * 24 * 720) { r.append(Point(time: Double(i) * 5)) }  // two days at 5 s
        #expect(r.count == HistoryRing<Point>.recentCapacity + HistoryRing<Point>.olderCapacity)
        let all = r.samples()
        #expect(all == all.sorted { $0.time < $1.time } && Set(all.map(\.time)).count == all.count, "oldest first, no repeats")
        let newest = Double(2 * 24 * 720 - 1) * 5
        #expect(all.last?.time == newest && all.suffix(720).first?.time == newest - 719 * 5, "the last hour at 5 s")
        #expect(newest - (all.first?.time ?? 0) >= 1439 * 60, "a day back (1440 minutes, the newest one included)")
        #expect(r.samples(since: newest - 60).count == 13)
        r.append(Point(time: 0))
        #expect(r.samples().last?.time == newest, "a sample from the past is ignored")
        var fresh = HistoryRing<Point>()
        #expect(fresh.samples().isEmpty)
        fresh.append(Point(time: 100))
        fresh.append(Point(time: 105))
        #expect(fresh.samples().map(\.time) == [100, 105] && fresh.count == 3, "both tiers hold the first, the merge shows it once")
    }

    @Test("sparklines scale to the maximum, average into the width, and fall back to ASCII; rates survive a counter reset")
    func sparkline() {
        #expect(Sparkline.render([0, 1, 2, 3, 4, 5, 6, 7], width: 8, unicode: true) == "▁▂▃▄▅▆▇█")
        #expect(Sparkline.render([0, 7], width: 8, unicode: false) == "_@")
        #expect(Sparkline.render([1, 1, 7, 7], width: 2, unicode: true) == "▂█")
        #expect(Sparkline.render([], width: 8, unicode: true).isEmpty && Sparkline.render([0, 0], width: 4, unicode: true) == "▁▁")
        #expect(Sparkline.render([.nan, 1], width: 2, unicode: true) == "▁█")
        #expect(Sparkline.rates([(0, 10), (5, 60), (10, 20)]) == [10, 4], "a reset counts from zero")
        #expect(Sparkline.rates([(0, 1)]).isEmpty && Sparkline.rates([(5, 1), (5, 2)]) == [0])
    }
}
