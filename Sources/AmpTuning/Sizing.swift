/// Server sizing from a memory budget and a CPU count: the rules of the reference stack
/// (seed 003/004, "aza-pg"), reproduced exactly at its published reference points and
/// interpolated linearly between them, so every setting grows monotonically with the budget
/// (no cliffs at tier boundaries).
///
/// | budget | shared_buffers | effective_cache_size | maintenance_work_mem | work_mem | max_connections |
/// | ---: | ---: | ---: | ---: | ---: | ---: |
/// | 512 MB | 128MB | 384MB | 32MB | 1MB | 80 |
/// | 1 GB | 256MB | 768MB | 32MB | 2MB | 120 |
/// | 2 GB | 512MB | 1536MB | 64MB | 4MB | 120 |
/// | 4 GB | 1024MB | 3072MB | 128MB | 5MB | 200 |
/// | 8 GB | 2048MB | 6144MB | 256MB | 10MB | 200 |
/// | 32 GB | 6553MB | 24576MB | 1024MB | 32MB | 200 |
/// | 64 GB | 9830MB | 49152MB | 2048MB | 32MB | 200 |
///
/// Rules: shared_buffers 25% up to 8 GB, then interpolated to 20% at 32 GB and 15% at 64 GB,
/// 15% beyond, capped at 32 GB; effective_cache_size 75%; maintenance_work_mem budget/16 below
/// 512 MB, then max(32 MB, budget/32), capped at 2 GB; max_connections 80 at 512 MB, 120 from
/// 1 GB to 2 GB, 200 from 4 GB, interpolated between; work_mem budget / (4 × max_connections),
/// at least 1 MB, capped at 32 MB.
public struct Sizing: Sendable, Equatable {
    public var sharedBuffersMB: Int
    public var effectiveCacheSizeMB: Int
    public var maintenanceWorkMemMB: Int
    public var workMemMB: Int
    public var maxConnections: Int
    public var maxWorkerProcesses: Int
    public var maxParallelWorkers: Int
    public var maxParallelWorkersPerGather: Int
    public var maxParallelMaintenanceWorkers: Int

    /// Sizes for a budget in MiB and a CPU count.
    public init(memoryMB budget: Int, cpus: Int) {
        let m = Double(max(budget, 32))
        sharedBuffersMB = max(16, min(32768, Int(Self.interpolate(m, Self.sharedBuffersPoints, beyond: 0.15))))
        effectiveCacheSizeMB = Int(m * 0.75)
        let maintenance = m < 512 ? m / 16 : max(32, m / 32)
        maintenanceWorkMemMB = max(1, min(2048, Int(maintenance)))
        maxConnections = Int(Self.interpolate(m, Self.connectionPoints, beyond: nil).rounded())
        workMemMB = max(1, min(32, Int(m / (4 * Double(maxConnections)))))
        let c = max(1, cpus)
        maxWorkerProcesses = max(8, c)
        maxParallelWorkers = c
        maxParallelWorkersPerGather = max(1, min(4, c / 2))
        maxParallelMaintenanceWorkers = max(1, min(4, c / 2))
    }

    static let sharedBuffersPoints: [(Double, Double)] = [
        (512, 128), (1024, 256), (2048, 512), (4096, 1024), (8192, 2048), (32768, 6553.6), (65536, 9830.4),
    ]
    static let connectionPoints: [(Double, Double)] = [(512, 80), (1024, 120), (2048, 120), (4096, 200)]

    /// Linear interpolation through `points`; below the first point proportional to it (or the
    /// first value when `beyond` is nil); above the last, `beyond` × m (or the last value).
    static func interpolate(_ m: Double, _ points: [(Double, Double)], beyond: Double?) -> Double {
        guard let first = points.first, let last = points.last else { return 0 }
        if m <= first.0 { return beyond == nil ? first.1 : first.1 * m / first.0 }
        if m >= last.0 { return beyond.map { m * $0 } ?? last.1 }
        for (a, b) in zip(points, points.dropFirst()) where m <= b.0 {
            return a.1 + (b.1 - a.1) * (m - a.0) / (b.0 - a.0)
        }
        return last.1
    }

    /// The settings as server parameters.
    public var parameters: [(String, String)] {
        [
            ("shared_buffers", "\(sharedBuffersMB)MB"), ("effective_cache_size", "\(effectiveCacheSizeMB)MB"),
            ("maintenance_work_mem", "\(maintenanceWorkMemMB)MB"), ("work_mem", "\(workMemMB)MB"),
            ("max_connections", "\(maxConnections)"), ("max_worker_processes", "\(maxWorkerProcesses)"),
            ("max_parallel_workers", "\(maxParallelWorkers)"),
            ("max_parallel_workers_per_gather", "\(maxParallelWorkersPerGather)"),
            ("max_parallel_maintenance_workers", "\(maxParallelMaintenanceWorkers)"),
        ]
    }
}
