import SystemSupport
/// Where a budget came from, for reports.
public enum BudgetSource: Sendable, Equatable, CustomStringConvertible {
    case explicit(String)
    case cgroup(String)
    case physical(share: String)
    case affinity
    case online

    public var description: String {
        switch self {
        case .explicit(let what): return what
        case .cgroup(let file): return "cgroup limit (\(file))"
        case .physical(let share): return "physical memory × \(share)"
        case .affinity: return "CPU affinity mask"
        case .online: return "online CPUs"
        }
    }
}

/// Memory and CPU detection, pure: every file is read through `read` (path → contents), so
/// tests feed fake cgroup and meminfo files.
public struct ResourceDetector: Sendable {
    public let read: @Sendable (String) -> String?

    public init(read: @escaping @Sendable (String) -> String?) { self.read = read }

    /// The memory limit of this process's cgroup (the smallest limit on the path to the root):
    /// cgroup v2 `memory.max` and `memory.high`; cgroup v1 `memory.limit_in_bytes`. Nil when
    /// unlimited or unknown.
    public func cgroupMemoryLimit() -> (bytes: UInt64, file: String)? {
        guard let text = read("/proc/self/cgroup") else { return nil }
        var best: (UInt64, String)?
        func consider(_ path: String) {
            guard let raw = read(path)?.split(separator: "\n").first.map(String.init) else { return }
            let v = raw.trimmingWhitespace
            guard v != "max", let n = UInt64(v), n < (1 << 60) else { return }  // v1 "unlimited" is ~2^63
            if best == nil || n < best!.0 { best = (n, path) }
        }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else { continue }
            let path = parts[2]
            if parts[0] == "0" && parts[1].isEmpty {
                for dir in ancestors(path) {
                    consider("/sys/fs/cgroup\(dir)/memory.max")
                    consider("/sys/fs/cgroup\(dir)/memory.high")
                }
            } else if parts[1].split(separator: ",").contains("memory") {
                for dir in ancestors(path) { consider("/sys/fs/cgroup/memory\(dir)/memory.limit_in_bytes") }
            }
        }
        return best.map { (bytes: $0.0, file: $0.1) }
    }

    /// `MemTotal` of /proc/meminfo in bytes.
    public func physicalMemory() -> UInt64? {
        guard let text = read("/proc/meminfo") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kb = UInt64(fields[1]) { return kb * 1024 }
        }
        return nil
    }

    /// The CPU quota of this process's cgroup, rounded up: v2 `cpu.max` ("QUOTA PERIOD" or
    /// "max PERIOD"), v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`.
    public func cgroupCPUQuota() -> (cpus: Int, file: String)? {
        guard let text = read("/proc/self/cgroup") else { return nil }
        var best: (Int, String)?
        func take(_ quota: Double, _ period: Double, _ file: String) {
            guard quota > 0, period > 0 else { return }
            let n = max(1, Int((quota / period).rounded(.up)))
            if best == nil || n < best!.0 { best = (n, file) }
        }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                for dir in ancestors(parts[2]) {
                    let file = "/sys/fs/cgroup\(dir)/cpu.max"
                    guard let v = read(file)?.trimmingWhitespace else { continue }
                    let f = v.split(separator: " ")
                    if f.count == 2, f[0] != "max", let q = Double(f[0]), let p = Double(f[1]) { take(q, p, file) }
                }
            } else if parts[1].split(separator: ",").contains("cpu") {
                let base = parts[1].contains("cpuacct") ? "/sys/fs/cgroup/cpu,cpuacct" : "/sys/fs/cgroup/cpu"
                for dir in ancestors(parts[2]) {
                    let qf = "\(base)\(dir)/cpu.cfs_quota_us"
                    if let q = read(qf).flatMap({ Double($0.trimmingWhitespace) }),
                       let p = read("\(base)\(dir)/cpu.cfs_period_us").flatMap({ Double($0.trimmingWhitespace) }) {
                        take(q, p, qf)
                    }
                }
            }
        }
        return best.map { (cpus: $0.0, file: $0.1) }
    }

    /// `/a/b/c` → `/a/b/c`, `/a/b`, `/a`, ``.
    func ancestors(_ path: String) -> [String] {
        var parts = path.split(separator: "/").map(String.init)
        var out: [String] = []
        while true {
            out.append(parts.isEmpty ? "" : "/" + parts.joined(separator: "/"))
            if parts.isEmpty { break }
            parts.removeLast()
        }
        return out
    }
}

