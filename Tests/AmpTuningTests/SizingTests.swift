import AmpTuning
import Testing

@Suite("sizing (pure)")
struct SizingTests {
    // budget MB, shared_buffers, effective_cache_size, maintenance_work_mem (nil: not published), work_mem, max_connections
    static let reference: [(Int, Int, Int, Int?, Int, Int)] = [
        (512, 128, 384, 32, 1, 80), (1024, 256, 768, nil, 2, 120), (2048, 512, 1536, 64, 4, 120),
        (4096, 1024, 3072, 128, 5, 200), (8192, 2048, 6144, 256, 10, 200), (32768, 6553, 24576, 1024, 32, 200),
        (65536, 9830, 49152, 2048, 32, 200),
    ]

    @Test("the reference stack's published points", arguments: reference.indices)
    func referencePoints(_ i: Int) {
        let (mb, sb, ecs, mwm, wm, conn) = Self.reference[i]
        let s = Sizing(memoryMB: mb, cpus: 4)
        #expect(s.sharedBuffersMB == sb, "shared_buffers at \(mb) MB")
        #expect(s.effectiveCacheSizeMB == ecs, "effective_cache_size at \(mb) MB")
        if let mwm { #expect(s.maintenanceWorkMemMB == mwm, "maintenance_work_mem at \(mb) MB") }
        #expect(s.workMemMB == wm, "work_mem at \(mb) MB")
        #expect(s.maxConnections == conn, "max_connections at \(mb) MB")
    }

    @Test("monotonic between and beyond the points, with the caps")
    func monotonic() {
        var previous = Sizing(memoryMB: 64, cpus: 2)
        for mb in stride(from: 96, through: 512 * 1024, by: 32) {
            let s = Sizing(memoryMB: mb, cpus: 2)
            #expect(s.sharedBuffersMB >= previous.sharedBuffersMB, "shared_buffers drops at \(mb)")
            #expect(s.effectiveCacheSizeMB >= previous.effectiveCacheSizeMB)
            #expect(s.maintenanceWorkMemMB >= previous.maintenanceWorkMemMB, "maintenance_work_mem drops at \(mb)")
            #expect(s.workMemMB >= previous.workMemMB, "work_mem drops at \(mb)")
            #expect(s.maxConnections >= previous.maxConnections)
            previous = s
        }
        let huge = Sizing(memoryMB: 1 << 20, cpus: 64)
        #expect(huge.sharedBuffersMB == 32768 && huge.maintenanceWorkMemMB == 2048 && huge.workMemMB == 32)
        // No cliff at the 4 GB tier boundary: one MB more never costs more than a few MB.
        #expect(abs(Sizing(memoryMB: 4095, cpus: 2).workMemMB - Sizing(memoryMB: 4096, cpus: 2).workMemMB) <= 1)
    }

    @Test("workers follow the CPU count")
    func workers() {
        let one = Sizing(memoryMB: 1024, cpus: 1)
        #expect(one.maxWorkerProcesses == 8 && one.maxParallelWorkers == 1 && one.maxParallelWorkersPerGather == 1)
        let many = Sizing(memoryMB: 1024, cpus: 16)
        #expect(many.maxWorkerProcesses == 16 && many.maxParallelWorkers == 16 && many.maxParallelWorkersPerGather == 4
            && many.maxParallelMaintenanceWorkers == 4)
    }

    @Test("memory sizes parse, bounded and checked")
    func sizes() {
        #expect(MemorySize(parsing: "512MB")?.bytes == 512 << 20)
        #expect(MemorySize(parsing: "2GB")?.bytes == 2 << 30)
        #expect(MemorySize(parsing: "1.5GiB")?.bytes == 3 << 29)
        #expect(MemorySize(parsing: "1024")?.bytes == 1 << 30)
        #expect(MemorySize(parsing: " 16MB ") == MemorySize.minimum)
        #expect(MemorySize(parsing: "1PB") == MemorySize.maximum)
        let bad = ["", "abc", "10XB", "-1GB", "1MB", "15MB", "1.1PB", "9223372036854775807GB", "99999999999999999999999999999999",
                   "1.2.3GB", ".GB", "nan", "inf", "1e9", "0x10", "2 G B", "\u{0}1GB"]
        for text in bad { #expect(MemorySize(parsing: text) == nil, "\(text)") }
    }
}

@Suite("resource detection (pure, fake files)")
struct DetectionTests {
    func detector(_ files: [String: String]) -> ResourceDetector { ResourceDetector { files[$0] } }

    @Test func cgroupV2() {
        let d = detector([
            "/proc/self/cgroup": "0::/user.slice/user-1000.slice/user@1000.service/app.slice/amp@p.service\n",
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/amp@p.service/memory.max": "1073741824\n",
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/amp@p.service/memory.high": "max\n",
            "/sys/fs/cgroup/user.slice/memory.max": "max\n",
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/amp@p.service/cpu.max": "150000 100000\n",
        ])
        #expect(d.cgroupMemoryLimit()?.bytes == 1 << 30)
        #expect(d.cgroupMemoryLimit()?.file.hasSuffix("amp@p.service/memory.max") == true)
        #expect(d.cgroupCPUQuota()?.cpus == 2)
    }

    @Test func cgroupV2HighAndParentLimits() {
        let d = detector([
            "/proc/self/cgroup": "0::/a/b\n",
            "/sys/fs/cgroup/a/b/memory.max": "max", "/sys/fs/cgroup/a/b/memory.high": "805306368",
            "/sys/fs/cgroup/a/memory.max": "536870912",
        ])
        #expect(d.cgroupMemoryLimit()?.bytes == 512 << 20, "the smallest limit on the path wins")
    }

    @Test func cgroupV1() {
        let d = detector([
            "/proc/self/cgroup": "12:cpu,cpuacct:/docker/x\n11:memory:/docker/x\n1:name=systemd:/docker/x\n",
            "/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes": "2147483648\n",
            "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us": "200000", "/sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000",
        ])
        #expect(d.cgroupMemoryLimit()?.bytes == 2 << 30)
        #expect(d.cgroupCPUQuota()?.cpus == 2)
    }

    @Test func unlimitedAndMeminfo() {
        let d = detector([
            "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max", "/sys/fs/cgroup/cpu.max": "max 100000",
            "/proc/meminfo": "MemTotal:       16384000 kB\nMemFree:         1000 kB\n",
        ])
        #expect(d.cgroupMemoryLimit() == nil)
        #expect(d.cgroupCPUQuota() == nil)
        #expect(d.physicalMemory() == 16_384_000 * 1024)
    }
}

@Suite("tuning plan (pure)")
struct PlanTests {
    func plan(_ major: Int, lz4: Bool = true, libs: Set<String> = ["pg_stat_statements", "auto_explain"], profile: Profile = .dev) -> [String: String] {
        let input = TuningInput(profile: profile, memoryBytes: 1 << 30, memorySource: .explicit("--memory"), cpus: 2, cpuSource: .online,
                                serverMajor: major, hasLZ4: lz4, availableLibraries: libs)
        var out: [String: String] = [:]
        for s in tuningPlan(input) { out[s.name] = s.value }
        return out
    }

    @Test func versionAware() {
        #expect(plan(18)["io_method"] == "worker")
        #expect(plan(16)["io_method"] == nil, "io_method is unknown before 18")
        #expect(plan(16)["wal_compression"] == "lz4")
        #expect(plan(15, lz4: false)["wal_compression"] == "pglz")
        #expect(plan(14)["wal_compression"] == "on", "lz4/pglz values arrived in 15")
    }

    @Test func extensionsOnlyWhenPresent() {
        #expect(plan(15)["shared_preload_libraries"] == "pg_stat_statements,auto_explain")
        #expect(plan(15)["auto_explain.log_min_duration"] == "250ms")
        #expect(plan(15, libs: [])["shared_preload_libraries"] == nil)
        #expect(plan(15, libs: ["pg_stat_statements"])["auto_explain.log_min_duration"] == nil)
    }

    @Test func profiles() {
        #expect(plan(15, profile: .dev)["fsync"] == "off")
        // A crash of PostgreSQL must not lose acknowledged commits in the dev profile either.
        #expect(plan(15, profile: .dev)["synchronous_commit"] == "on")
        #expect(plan(15, profile: .durable)["fsync"] == "on")
        #expect(plan(15, profile: .durable)["synchronous_commit"] == "on")
        #expect(Profile.durable.initdbArguments == ["--data-checksums"])
        #expect(plan(15)["shared_buffers"] == "256MB", "1 GB budget")
    }

    @Test("a guessed budget caps shared_buffers at 128MB in the dev profile only; a given one does not")
    func guessedBudgetCap() {
        func sharedBuffers(_ profile: Profile, _ source: BudgetSource) -> EffectiveSetting? {
            let input = TuningInput(profile: profile, memoryBytes: 4 << 30, memorySource: source, cpus: 2, cpuSource: .online,
                                    serverMajor: 15, hasLZ4: true, availableLibraries: [])
            return tuningPlan(input).last { $0.name == "shared_buffers" }
        }
        #expect(sharedBuffers(.dev, .physical(share: "1/16"))?.value == "128MB")
        #expect(sharedBuffers(.dev, .physical(share: "1/16"))?.source.kind == "profile")
        #expect(sharedBuffers(.durable, .physical(share: "1/8"))?.value == "1024MB")
        #expect(sharedBuffers(.dev, .explicit("--memory"))?.value == "1024MB")
        #expect(sharedBuffers(.dev, .cgroup("memory.max"))?.value == "1024MB")
        // Below the cap nothing changes.
        let small = TuningInput(profile: .dev, memoryBytes: 256 << 20, memorySource: .physical(share: "1/16"), cpus: 2, cpuSource: .online,
                                serverMajor: 15, hasLZ4: true, availableLibraries: [])
        #expect(tuningPlan(small).last { $0.name == "shared_buffers" }?.value == "64MB")
    }
}
