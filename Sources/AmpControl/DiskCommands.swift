#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpRegistry
import ArgumentParser
import SystemSupport
import Varlink

/// What amp keeps on disk for one project.
struct ProjectUsage {
    var name: String
    var base: String
    var clusterBytes: UInt64
    /// Clusters kept by `ampctl upgrade`, each with its age in seconds.
    var rollbackCopies: [(path: String, bytes: UInt64, ageSeconds: Int)]
    /// Scratch copies of restores, resets and upgrades a crash cut short that the next start
    /// could not decide on (or, while one runs, its own), each with its age in seconds.
    var leftovers: [(entry: InterruptedOperations.Entry, bytes: UInt64, ageSeconds: Int)]
    /// The rest of `.amp` (config, logs of failed upgrades, …).
    var otherBytes: UInt64

    static func measure(name: String, base: String, now: Int = Platform.current.now()) -> ProjectUsage {
        let ampDir = AmpDirectory(base: base, source: .flag)
        let cluster = diskUsage(ampDir.metadb)
        let copies = UpgradeCommand.rollbackCopies(ampDir).map { copy -> (String, UInt64, Int) in
            var st = stat()
            let age = stat(copy.path, &st) == 0 ? max(0, now - Int(st.st_mtim.tv_sec)) : 0
            return (copy.path, diskUsage(copy.path), age)
        }
        let leftovers = InterruptedOperations.scan(dataDirectory: ampDir.metadb).map { entry in
            (entry, diskUsage(entry.path), max(0, now - entry.changed))
        }
        let total = diskUsage(ampDir.path)
        let kept = copies.reduce(UInt64(0)) { $0 &+ $1.1 } &+ leftovers.reduce(UInt64(0)) { $0 &+ $1.1 }
        return ProjectUsage(name: name, base: base, clusterBytes: cluster, rollbackCopies: copies, leftovers: leftovers,
                            otherBytes: total > cluster &+ kept ? total - cluster - kept : 0)
    }

    var rollbackBytes: UInt64 { rollbackCopies.reduce(0) { $0 &+ $1.bytes } }
    var leftoverBytes: UInt64 { leftovers.reduce(0) { $0 &+ $1.bytes } }
}

/// Every registered project, plus the one of the current directory when it is not registered.
func knownProjects(environment: [String: String]) -> [(name: String, base: String)] {
    var out: [(String, String)] = []
    if let dir = Registry.defaultDirectory(environment: environment) {
        out = Registry(directory: dir).load().entries.map { ($0.name, $0.base) }
    }
    if let here = try? resolveProject(nil, address: nil, environment: environment), !here.base.isEmpty, !out.contains(where: { $0.1 == here.base }) {
        out.append((here.name, here.base))
    }
    return out
}

struct DuCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "du", abstract: "Show the disk space amp uses: each project's cluster and rollback copies, and the template cache.")
    @Flag(name: .customLong("json"), help: "Print data as JSON.") var json = false

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let environment = Platform.current.environment
            let projects = knownProjects(environment: environment).map { ProjectUsage.measure(name: $0.name, base: $0.base) }
            let cacheDirectory = Registry.templateCacheDirectory(environment: environment)
            let templates = cacheDirectory.map { ClusterTemplateCache(directory: $0).entries() } ?? []
            let total = projects.reduce(UInt64(0)) { $0 &+ $1.clusterBytes &+ $1.rollbackBytes &+ $1.leftoverBytes &+ $1.otherBytes } &+ templates.reduce(0) { $0 &+ $1.bytes }
            if json {
                var rows: [JSONValue] = []
                for p in projects {
                    var o: JSONObject = [:]
                    o["name"] = .string(p.name)
                    o["path"] = .string(p.base)
                    o["cluster_bytes"] = .int(Int64(clamping: p.clusterBytes))
                    o["rollback_bytes"] = .int(Int64(clamping: p.rollbackBytes))
                    o["other_bytes"] = .int(Int64(clamping: p.otherBytes))
                    o["leftovers"] = .array(p.leftovers.map { l in
                        var e: JSONObject = [:]
                        e["path"] = .string(l.entry.path)
                        e["what"] = .string(l.entry.kind.label)
                        e["bytes"] = .int(Int64(clamping: l.bytes))
                        e["age_seconds"] = .int(Int64(l.ageSeconds))
                        return .object(e)
                    })
                    rows.append(.object(o))
                }
                var cache: [JSONValue] = []
                for t in templates {
                    var o: JSONObject = [:]
                    o["key"] = .string(t.key)
                    o["bytes"] = .int(Int64(clamping: t.bytes))
                    o["binary"] = t.binary.map { .string($0) } ?? .null
                    o["current"] = .bool(t.current)
                    cache.append(.object(o))
                }
                var top: JSONObject = [:]
                top["projects"] = .array(rows)
                top["templates"] = .array(cache)
                top["template_cache"] = cacheDirectory.map { .string($0) } ?? .null
                top["total_bytes"] = .int(Int64(clamping: total))
                outJSON(.object(top))
                return .success
            }
            let w = max(7, projects.map(\.name.count).max() ?? 0)
            out("PROJECT".padding(toLength: w) + "  CLUSTER    ROLLBACK   OTHER      PATH")
            for p in projects {
                out(p.name.padding(toLength: w) + "  " + humanBytes(Int64(clamping: p.clusterBytes)).padding(toLength: 9) + "  "
                    + humanBytes(Int64(clamping: p.rollbackBytes)).padding(toLength: 9) + "  " + humanBytes(Int64(clamping: p.otherBytes)).padding(toLength: 9)
                    + "  " + p.base)
            }
            let leftovers = projects.flatMap { p in p.leftovers.map { (p.name, $0) } }
            if !leftovers.isEmpty {
                out("")
                out("LEFT BY INTERRUPTED OPERATIONS")
                for (name, l) in leftovers {
                    out(name.padding(toLength: w) + "  " + humanBytes(Int64(clamping: l.bytes)).padding(toLength: 9) + "  " + humanDuration(Double(l.ageSeconds)).padding(toLength: 9)
                        + "  " + l.entry.path + " (" + l.entry.kind.label + ")")
                }
            }
            out("")
            out("TEMPLATES (\(cacheDirectory ?? "no cache directory"))")
            for t in templates {
                let state = t.current ? "current" : (t.binary == nil ? "unknown binaries" : "stale: \(t.binary ?? "") is gone or replaced")
                out(t.key.padding(toLength: 24) + "  " + humanBytes(Int64(clamping: t.bytes)).padding(toLength: 9) + "  " + state)
            }
            out("")
            out("TOTAL \(humanBytes(Int64(clamping: total)))")
            let reclaimable = templates.filter { !$0.current }.reduce(UInt64(0)) { $0 &+ $1.bytes } &+ projects.reduce(0) { $0 &+ $1.rollbackBytes &+ $1.leftoverBytes }
            if reclaimable > 0 { err("ampctl: \(humanBytes(Int64(clamping: reclaimable))) can be freed: `ampctl gc --dry-run` shows what") }
            return .success
        }
    }
}

struct GcCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove template-cache entries whose binaries are gone or replaced, copies left by interrupted operations, and rollback copies older than --older-than.")
    @Flag(name: .customLong("dry-run"), help: "Only list what would be removed.") var dryRun = false
    @Option(name: .customLong("older-than"), help: ArgumentHelp("Rollback copies kept longer than this many days (default 30).", valueName: "DAYS")) var olderThan = 30
    @Flag(help: "Do not ask first.") var yes = false

    func validate() throws {
        guard (0...36500).contains(olderThan) else { throw ValidationError("--older-than \(olderThan): use 0 to 36500 days") }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let environment = Platform.current.environment
            let cache = Registry.templateCacheDirectory(environment: environment).map(ClusterTemplateCache.init(directory:))
            let templates = (cache?.entries() ?? []).filter { !$0.current }
            let limit = olderThan * 86_400
            var copies: [(project: String, path: String, bytes: UInt64)] = []
            var leftovers: [(project: String, path: String, bytes: UInt64, line: String)] = []
            for p in knownProjects(environment: environment) {
                let usage = ProjectUsage.measure(name: p.name, base: p.base)
                for c in usage.rollbackCopies where c.ageSeconds >= limit {
                    copies.append((p.name, c.path, c.bytes))
                }
                let holder = lockHolder(AmpDirectory(base: p.base, source: .flag))
                for l in usage.leftovers where !InterruptedOperations.mayBeInProgress(l.entry, lockHolder: holder) {
                    leftovers.append((p.name, l.entry.path, l.bytes, "\(l.entry.kind.label), \(humanDuration(Double(l.ageSeconds))) old"))
                }
            }
            let bytes = templates.reduce(UInt64(0)) { $0 &+ $1.bytes } &+ copies.reduce(0) { $0 &+ $1.bytes } &+ leftovers.reduce(0) { $0 &+ $1.bytes }
            if templates.isEmpty && copies.isEmpty && leftovers.isEmpty {
                err("ampctl: nothing to remove (no stale templates, no copies left by interrupted operations, no rollback copies older than \(olderThan) days)")
                return .success
            }
            for t in templates { out("template \(t.key)  \(humanBytes(Int64(clamping: t.bytes)))  \(t.binary.map { "\($0) is gone or replaced" } ?? "made by an older amp, binaries unknown")") }
            for c in copies { out("rollback \(c.project)  \(humanBytes(Int64(clamping: c.bytes)))  \(c.path)") }
            for l in leftovers { out("leftover \(l.project)  \(humanBytes(Int64(clamping: l.bytes)))  \(l.path) (\(l.line))") }
            if dryRun {
                err("ampctl: \(humanBytes(Int64(clamping: bytes))) would be freed; run `ampctl gc` to remove them")
                return .success
            }
            try confirm("Remove these (\(humanBytes(Int64(clamping: bytes))))?", yes: yes)
            for t in templates {
                guard let cache else { break }
                do throws(PostgresError) { try await cache.remove(t) } catch { throw AmpctlError(.cannotCreate, error.message) }
            }
            for c in copies {
                do { try removeTree(c.path) } catch { throw AmpctlError(.cannotCreate, "\(error); remove it by hand") }
            }
            for l in leftovers { InterruptedOperations.discardTree(l.path) }
            err("ampctl: freed \(humanBytes(Int64(clamping: bytes)))")
            return .success
        }
    }
}
