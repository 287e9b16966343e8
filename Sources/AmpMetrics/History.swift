/// A sample with a time (seconds since the epoch), as ``HistoryRing`` keeps them.
public protocol TimedSample: Sendable {
    var time: Double { get }
}

/// The history ring: every sample of the last hour (720 at one per 5 s) and one per minute for
/// the day before (1440): at most 2160 samples, whatever the uptime.
public struct HistoryRing<Sample: TimedSample>: Sendable {
    public static var recentCapacity: Int { 720 }
    public static var olderCapacity: Int { 1440 }
    public static var olderSpacing: Double { 60 }

    private(set) var recent: [Sample] = []
    private(set) var older: [Sample] = []

    public init() {}

    /// Adds `sample` (one not newer than the newest is ignored); the first sample of each
    /// minute also goes to the day tier.
    public mutating func append(_ sample: Sample) {
        if let last = recent.last, sample.time <= last.time { return }
        recent.append(sample)
        if recent.count > Self.recentCapacity { recent.removeFirst(recent.count - Self.recentCapacity) }
        if older.last.map({ sample.time - $0.time >= Self.olderSpacing }) ?? true {
            older.append(sample)
            if older.count > Self.olderCapacity { older.removeFirst(older.count - Self.olderCapacity) }
        }
    }

    /// The samples at or after `since` (all when nil), oldest first: the day tier up to where
    /// the hour tier begins, then the hour tier.
    public func samples(since: Double? = nil) -> [Sample] {
        let start = recent.first?.time ?? .infinity
        let merged = older.filter { $0.time < start } + recent
        guard let since else { return merged }
        return merged.filter { $0.time >= since }
    }

    /// How many samples are kept (both tiers).
    public var count: Int { recent.count + older.count }
}

/// A line of block characters for a series (`▁▂▃▄▅▆▇█`, or `_.-=+*#@` without UTF-8), at most
/// `width` wide: each character the mean of its share of the values, scaled from 0 to the
/// maximum. Pure.
public enum Sparkline {
    public static func render(_ values: [Double], width: Int, unicode: Bool) -> String {
        guard !values.isEmpty, width > 0 else { return "" }
        let levels: [Character] = unicode ? ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"] : ["_", ".", "-", "=", "+", "*", "#", "@"]
        let buckets = min(width, values.count)
        var means: [Double] = []
        for b in 0..<buckets {
            let lo = b * values.count / buckets, hi = max(lo + 1, (b + 1) * values.count / buckets)
            let slice = values[lo..<hi].filter { $0.isFinite }
            means.append(slice.isEmpty ? 0 : slice.reduce(0, +) / Double(slice.count))
        }
        let top = means.max() ?? 0
        return String(means.map { v in
            guard top > 0, v > 0 else { return levels[0] }
            return levels[min(levels.count - 1, Int((v / top * Double(levels.count - 1)).rounded()))]
        })
    }

    /// Per-second rates from a cumulative counter's samples (a counter that went down, as after
    /// a restart or a statistics reset, counts from zero).
    public static func rates(_ points: [(time: Double, value: Double)]) -> [Double] {
        guard points.count > 1 else { return [] }
        return (1..<points.count).map { i in
            let dt = points[i].time - points[i - 1].time
            let dv = points[i].value >= points[i - 1].value ? points[i].value - points[i - 1].value : points[i].value
            return dt > 0 ? dv / dt : 0
        }
    }
}
