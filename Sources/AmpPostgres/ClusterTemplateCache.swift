#if canImport(Glibc)
import Glibc
#endif
import CFiles
import ChildProcess
import SystemSupport
import ThreadSupport

/// Pristine clusters made once by `initdb` and copied for every new data directory, so a first
/// start costs a file copy (a reflink where the file system shares extents) instead of `initdb`.
///
/// One template per key: the PostgreSQL version, the binaries (directory, size and modification
/// time of `postgres` and `initdb`, so a package upgrade makes a new one), locale, encoding and
/// initdb arguments. Layout: `DIR/KEY/data` (the cluster) and `DIR/KEY/manifest` (every file's
/// type, size and modification time, written last). Building and copying hold an exclusive
/// `flock` on `DIR/KEY.lock`, so concurrent first starts build one template and wait for it.
/// Before every use the template is checked against its manifest; a damaged one is removed and
/// built again, never copied.
///
/// Trade-off: every copy carries the template's `system_identifier` (pg_controldata). Clusters
/// made from one template therefore look alike to physical replication tools; amp's clusters are
/// independent development databases, where that does not matter.
public struct ClusterTemplateCache: Sendable {
    /// The cache directory, e.g. `$XDG_CACHE_HOME/amp/templates`.
    public let directory: String

    public init(directory: String) {
        self.directory = absolutePath(directory)
    }

    /// How a cluster was made from the cache.
    public enum CopyKind: String, Sendable {
        /// The template existed and was copied.
        case copied
        /// The template was copied by reflink (shared extents).
        case reflinked
        /// The template was built first (initdb), then copied.
        case builtThenCopied
    }

    /// The key of a template: a hex FNV-1a hash of everything that shapes the cluster.
    public static func key(binaries: PostgresBinaries, version: PostgresVersion, locale: String, encoding: String, arguments: [String]) -> String {
        var parts = [version.full, binaries.directory, locale, encoding] + arguments
        for tool in ["postgres", "initdb"] {
            var st = stat()
            if stat(binaries.path(tool), &st) == 0 {
                parts.append("\(tool):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)")
            }
        }
        return "pg\(version.major)-" + FNV1a.hex(parts.joined(separator: "\u{0}"))
    }

    /// Makes `work` a copy of the template for these settings, building the template first
    /// when there is none (or it is damaged).
    func instantiate(
        into work: String, cluster: Cluster, locale: String, encoding: String, initdbArguments: [String], timeout: Duration
    ) async throws(PostgresError) -> CopyKind {
        let key = Self.key(binaries: cluster.binaries, version: cluster.version, locale: locale, encoding: encoding, arguments: initdbArguments)
        try FileSystem.makeDirectory(directory, mode: 0o700)
        let lock = try await Self.lock(directory + "/" + key + ".lock")
        defer { close(lock) }
        let template = directory + "/" + key
        var built = false
        if FileSystem.exists(template) {
            if let problem = Self.verify(template) {
                cluster.logger.warning("template \(template) is damaged (\(problem)); building it again")
                try FileSystem.removeTree(template)
            }
        }
        if !FileSystem.exists(template) {
            let staging = directory + "/.build-" + key + "-\(getpid())"
            try? FileSystem.removeTree(staging)
            try FileSystem.makeDirectory(staging, mode: 0o700)
            do throws(PostgresError) {
                try await cluster.initdb(in: staging + "/data", locale: locale, encoding: encoding, arguments: initdbArguments, timeout: timeout)
                try Self.writeManifest(staging)
                try Self.writeOrigin(staging, binaries: cluster.binaries)
                if rename(staging, template) != 0 { throw FileSystem.ioError("cannot move the template into \(template)", errno: errno) }
            } catch {
                try? FileSystem.removeTree(staging)
                throw error
            }
            built = true
            cluster.logger.info("built cluster template", metadata: ["template": "\(template)"])
        }
        var reflinked = false
        try Self.copyTree(template + "/data", to: work, reflinked: &reflinked)
        return built ? .builtThenCopied : (reflinked ? .reflinked : .copied)
    }

    /// An exclusive flock on `path`, taken on a thread of its own (it may wait for another
    /// process building the template).
    static func lock(_ path: String) async throws(PostgresError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystem.ioError("cannot open \(path)", errno: errno) }
        let result = await runOnThread(name: "amp-template-lock") { amp_flock_exclusive(fd) }
        guard result == 0 else {
            close(fd)
            throw FileSystem.ioError("cannot lock \(path)", errno: result)
        }
        return fd
    }

    /// Every entry below `root` as `TYPE SIZE MTIME PATH` lines, sorted.
    static func listing(_ root: String) -> [String] {
        var lines: [String] = []
        func walk(_ relative: String) {
            let path = relative.isEmpty ? root : root + "/" + relative
            for name in listDirectory(path).sorted() {
                let rel = relative.isEmpty ? name : relative + "/" + name
                var st = stat()
                guard lstat(root + "/" + rel, &st) == 0 else { lines.append("? 0 0 \(rel)"); continue }
                let type = st.st_mode & S_IFMT
                if type == S_IFDIR {
                    lines.append("d 0 0 \(rel)")
                    walk(rel)
                } else {
                    let kind = type == S_IFREG ? "f" : "o"
                    lines.append("\(kind) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(rel)")
                }
            }
        }
        walk("")
        return lines
    }

    static func writeManifest(_ template: String) throws(PostgresError) {
        let text = listing(template + "/data").joined(separator: "\n") + "\n"
        let path = template + "/manifest"
        guard let f = fopen(path, "w") else { throw FileSystem.ioError("cannot write \(path)", errno: errno) }
        fputs(text, f)
        guard fclose(f) == 0 else { throw FileSystem.ioError("cannot write \(path)", errno: errno) }
    }

    /// `DIR/KEY/origin`: the `postgres` binary the template was made with (`PATH SIZE MTIME`),
    /// so ``entries()`` can tell a template whose binaries are gone or were replaced.
    static func writeOrigin(_ template: String, binaries: PostgresBinaries) throws(PostgresError) {
        let postgres = binaries.path("postgres")
        var st = stat()
        guard stat(postgres, &st) == 0 else { throw FileSystem.ioError("cannot read \(postgres)", errno: errno) }
        do {
            try writeFileAtomically(template + "/origin", Array("\(postgres) \(st.st_size) \(st.st_mtim.tv_sec)\n".utf8), mode: 0o600)
        } catch {
            throw PostgresError(.dataDirectoryUnusable, "\(error); check the permissions of \(template)")
        }
    }

    /// One template of the cache, for `ampctl du` and `ampctl gc`.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var path: String
        public var bytes: UInt64
        /// The `postgres` binary it was made with; nil for a template of an amp that did not
        /// record it.
        public var binary: String?
        /// Whether that binary is still there, unchanged (same size and modification time).
        public var current: Bool
    }

    /// Every template in the cache.
    public func entries() -> [Entry] {
        listDirectory(directory).filter { $0.hasPrefix("pg") && !$0.hasSuffix(".lock") }.sorted().map { key in
            let path = directory + "/" + key
            let fields = (FileContents.text(path + "/origin", limit: 8192) ?? "").trimmingWhitespace.split(separator: " ").map(String.init)
            var current = false
            var binary: String?
            if fields.count == 3 {
                binary = fields[0]
                var st = stat()
                current = stat(fields[0], &st) == 0 && "\(st.st_size)" == fields[1] && "\(st.st_mtim.tv_sec)" == fields[2]
            }
            return Entry(key: key, path: path, bytes: diskUsage(path), binary: binary, current: current)
        }
    }

    /// Removes a template and its lock file, holding the lock (a start copying it waits).
    public func remove(_ entry: Entry) async throws(PostgresError) {
        let lock = try await Self.lock(directory + "/" + entry.key + ".lock")
        defer { close(lock) }
        try FileSystem.removeTree(entry.path)
    }

    /// Why the template does not match its manifest, or nil.
    static func verify(_ template: String) -> String? {
        guard let manifest = FileSystem.readText(template + "/manifest") else { return "no manifest" }
        let expected = manifest.split(separator: "\n").map(String.init)
        let actual = listing(template + "/data")
        if expected == actual { return nil }
        let missing = Set(expected).subtracting(actual).sorted().first
        let extra = Set(actual).subtracting(expected).sorted().first
        return missing.map { "changed or missing: \($0.split(separator: " ").last ?? "")" }
            ?? extra.map { "unexpected: \($0.split(separator: " ").last ?? "")" } ?? "differs"
    }

    /// Copies the directory tree `source` to the new directory `target` (0700 directories,
    /// files with their modes).
    static func copyTree(_ source: String, to target: String, reflinked: inout Bool) throws(PostgresError) {
        try FileSystem.makeDirectory(target, mode: 0o700)
        for name in listDirectory(source) {
            let from = source + "/" + name, to = target + "/" + name
            var st = stat()
            guard lstat(from, &st) == 0 else { throw FileSystem.ioError("cannot read \(from)", errno: errno) }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                try copyTree(from, to: to, reflinked: &reflinked)
                chmod(to, st.st_mode & 0o7777)
            case S_IFREG:
                var r: Int32 = 0
                let e = amp_copy_file(from, to, st.st_mode & 0o7777, &r)
                if e != 0 { throw FileSystem.ioError("cannot copy \(from) to \(to)", errno: e) }
                if r != 0 { reflinked = true }
            default:
                throw PostgresError(.dataDirectoryUnusable, "template entry \(from) is neither a file nor a directory; remove the template cache \(source)")
            }
        }
    }
}
