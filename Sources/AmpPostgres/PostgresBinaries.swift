#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Synchronization
import SystemSupport

/// A PostgreSQL major/minor version, as `postgres --version` and `PG_VERSION` state it.
public struct PostgresVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
    /// The major version as PostgreSQL writes it in `PG_VERSION`: `"15"`, or `"9.6"` before 10.
    public var major: String
    /// The full version string, e.g. `"15.18"`.
    public var full: String

    public init(major: String, full: String) {
        self.major = major
        self.full = full
    }

    /// The major version as a number (9.6 → 9, 15 → 15), for feature checks.
    public var majorNumber: Int { Int(major.split(separator: ".").first ?? "") ?? 0 }

    /// Parses the output of `postgres --version`, e.g.
    /// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` or `postgres (PostgreSQL) 18beta1`.
    public static func parse(versionOutput: String) -> PostgresVersion? {
        guard let range = versionOutput.firstRange(of: "(PostgreSQL) ") else { return nil }
        let rest = versionOutput[range.upperBound...]
        let token = rest.prefix { !$0.isWhitespace }
        let numeric = token.prefix { $0.isNumber || $0 == "." }
        let parts = numeric.split(separator: ".")
        guard let first = parts.first, let firstNumber = Int(first) else { return nil }
        let major = firstNumber >= 10 ? String(first) : (parts.count > 1 ? "\(first).\(parts[1])" : String(first))
        return PostgresVersion(major: major, full: String(token))
    }

    public static func < (lhs: PostgresVersion, rhs: PostgresVersion) -> Bool {
        let l = lhs.full.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let r = rhs.full.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return l.lexicographicallyPrecedes(r)
    }

    public var description: String { full }
}

/// A directory holding the PostgreSQL server binaries (`postgres`, `initdb`, `pg_ctl` …).
///
/// Supported versions: PostgreSQL 13 to 18; documentation links point at
/// ``PostgresDocs/version``.
public struct PostgresBinaries: Sendable, Equatable {
    /// The directory, e.g. `/usr/lib/postgresql/15/bin`.
    public var directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// The path of one of the binaries, e.g. `path("initdb")`.
    /// The binaries of one major version: the first of `preferring` (e.g. `--bin-dir`, the
    /// configured `bin_dir`) that holds that version, else the distribution's directory for it.
    public static func forMajor(_ major: Int, preferring: [String]) async -> PostgresBinaries? {
        var candidates = preferring
        candidates += distributionDirectories().filter { $0.hasSuffix("/\(major)/bin") || $0.hasSuffix("pgsql-\(major)/bin") }
        for dir in candidates where required.allSatisfy({ access(dir + "/" + $0, X_OK) == 0 }) {
            let binaries = PostgresBinaries(directory: dir)
            if let version = try? await binaries.version(), version.majorNumber == major { return binaries }
        }
        return nil
    }

    public func path(_ tool: String) -> String { directory + "/" + tool }

    /// The binaries every cluster needs.
    public static let required = ["postgres", "initdb"]

    /// The installed binaries of major version `major` in a distribution layout
    /// (`/usr/lib/postgresql/N/bin`, `/usr/pgsql-N/bin`), nil when it is not installed.
    public static func installed(major: String) -> PostgresBinaries? {
        distributionDirectories().first { dir in
            (dir.hasSuffix("/\(major)/bin") || dir.hasSuffix("pgsql-\(major)/bin")) && required.allSatisfy { access(dir + "/" + $0, X_OK) == 0 }
        }.map { PostgresBinaries(directory: $0) }
    }

    /// The distribution layouts searched after `PATH`, newest version first:
    /// Debian/Ubuntu `/usr/lib/postgresql/N/bin`, PGDG RPM `/usr/pgsql-N/bin`, and the
    /// source-install default `/usr/local/pgsql/bin`.
    public static func distributionDirectories(fileSystemRoot root: String = "") -> [String] {
        func versioned(_ parent: String, prefix: String, suffix: String) -> [String] {
            let names = listDirectory(root + parent)
                .filter { $0.hasPrefix(prefix) }
                .compactMap { name -> (Double, String)? in
                    guard let v = Double(name.dropFirst(prefix.count)) else { return nil }
                    return (v, root + parent + "/" + name + suffix)
                }
            return names.sorted { $0.0 > $1.0 }.map(\.1)
        }
        return versioned("/usr/lib/postgresql", prefix: "", suffix: "/bin")
            + versioned("/usr", prefix: "pgsql-", suffix: "/bin")
            + [root + "/usr/local/pgsql/bin"]
    }

    /// Finds the binaries: the explicit directory if one is given (and nothing else), then
    /// each directory of `searchPath` (a `PATH` value), then `distributionDirectories`.
    ///
    /// - Throws: ``PostgresError/Code/binariesNotFound`` listing every place looked at and how
    ///   to install PostgreSQL.
    public static func locate(
        explicit: String?, searchPath: String?, distributionDirectories: [String] = distributionDirectories()
    ) throws(PostgresError) -> PostgresBinaries {
        if let explicit {
            let missing = required.filter { !isExecutable(explicit + "/" + $0) }
            if missing.isEmpty { return PostgresBinaries(directory: explicit) }
            throw PostgresError(
                .binariesNotFound,
                "PostgreSQL binaries not found: \(explicit) has no executable \(missing.joined(separator: ", ")); "
                    + "point the binary directory at the one holding postgres and initdb (e.g. /usr/lib/postgresql/15/bin)")
        }
        let pathDirectories = (searchPath ?? "").split(separator: ":").map(String.init).filter { !$0.isEmpty }
        var looked: [String] = []
        for directory in pathDirectories + distributionDirectories {
            looked.append(directory)
            if required.allSatisfy({ isExecutable(directory + "/" + $0) }) {
                return PostgresBinaries(directory: canonicalDirectory(of: directory))
            }
        }
        throw PostgresError(
            .binariesNotFound,
            "PostgreSQL server binaries (postgres, initdb) not found in PATH or /usr/lib/postgresql/*/bin, "
                + "/usr/pgsql-*/bin, /usr/local/pgsql/bin; install them with `sudo apt install postgresql` "
                + "or set the binary directory (--bin-dir, AMP_PG_BIN_DIR, or bin_dir in config.toml)",
            details: ["searched: " + looked.joined(separator: ", ")])
    }

    /// Where a `PATH` entry of symbolic links (e.g. `/usr/local/bin/postgres` →
    /// `/usr/lib/postgresql/15/bin/postgres`) really points, so the installation's other tools
    /// (`pg_ctl`, `pg_controldata`) are found next to it. Falls back to `directory`.
    static func canonicalDirectory(of directory: String) -> String {
        guard let real = realPath(directory + "/postgres") else { return directory }
        let realDirectory = FileSystem.parentDirectory(real)
        return required.allSatisfy({ isExecutable(realDirectory + "/" + $0) }) ? realDirectory : directory
    }

    /// The version, from `cacheDirectory` when a file there records it for exactly this
    /// `postgres` binary (path, inode, size and modification time), else by running it (and
    /// recording the answer). Saves a process spawn on every start.
    public func version(cacheDirectory: String?) async throws(PostgresError) -> PostgresVersion {
        if let text = await cachedFact("version", cacheDirectory: cacheDirectory, compute: { try? await self.version().full }),
           let v = PostgresVersion.parse(versionOutput: "postgres (PostgreSQL) " + text) {
            return v
        }
        return try await version()
    }

    /// A fact about this `postgres` binary, computed once and kept in `cacheDirectory` under
    /// `name-HASH` (HASH of the binary's path, inode, size and modification time), so a package
    /// upgrade recomputes it. Without a cache directory it is computed every time.
    func cachedFact(_ name: String, cacheDirectory: String?, compute: () async -> String?) async -> String? {
        var st = stat()
        guard let cacheDirectory, stat(path("postgres"), &st) == 0 else { return await compute() }
        let identity = "\(path("postgres")) \(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        let file = cacheDirectory + "/\(name)-" + String(FNV1a.hash(identity), radix: 16)
        if let text = FileSystem.readText(file), let newline = text.firstIndex(of: "\n"), text[..<newline] == identity {
            return String(text[text.index(after: newline)...])
        }
        guard let value = await compute() else { return nil }
        try? FileSystem.makeDirectory(cacheDirectory, mode: 0o700)
        if let f = fopen(file + ".tmp", "w") {
            fputs(identity + "\n" + value, f)
            if fclose(f) == 0 { rename(file + ".tmp", file) }
        }
        return value
    }

    /// Whether `postgres` was built with LZ4 (it links liblz4), which `wal_compression=lz4` needs.
    public func hasLZ4(cacheDirectory: String?) async -> Bool {
        let binary = path("postgres")
        let fact = await cachedFact("lz4", cacheDirectory: cacheDirectory) {
            // The dynamic section names liblz4.so.N: search the file's bytes (one read).
            guard case .bytes(let bytes) = FileContents.read(binary, limit: 256 << 20) else { return nil }
            let needle = Array("liblz4.so".utf8)
            let found = bytes.withUnsafeBufferPointer { hay in
                needle.withUnsafeBufferPointer { n in
                    guard let h = hay.baseAddress, let np = n.baseAddress, let first = n.first, hay.count >= n.count else { return false }
                    var i = 0
                    let last = hay.count - n.count
                    while i <= last {
                        // memchr to the next candidate, then compare the rest.
                        guard let hit = memchr(h + i, Int32(first), last - i + 1) else { return false }
                        i = h.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                        if memcmp(h + i, np, n.count) == 0 { return true }
                        i += 1
                    }
                    return false
                }
            }
            return found ? "yes" : "no"
        }
        return fact == "yes"
    }

    /// The names of every server parameter this `postgres` knows (`postgres --describe-config`),
    /// lower-cased; nil when it cannot be run.
    ///
    /// Command: `postgres --describe-config` — prints one line per parameter (name, context,
    /// group, type, …) and exits. See <https://www.postgresql.org/docs/15/app-postgres.html>.
    public func parameterNames(cacheDirectory: String?) async -> Set<String>? {
        let binary = path("postgres")
        let text = await cachedFact("parameters", cacheDirectory: cacheDirectory) {
            guard let output = try? await runCommand(binary, ["--describe-config"], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"]),
                  output.succeeded
            else { return nil }
            let names = output.text.split(separator: "\n").compactMap { $0.split(separator: "\t").first.map { $0.lowercased() } }
            return names.isEmpty ? nil : names.joined(separator: "\n")
        }
        return text.map { Set($0.split(separator: "\n").map(String.init)) }
    }

    /// The directories PostgreSQL loads libraries from, for this binary directory.
    public var libraryDirectories: [String] {
        let parent = FileSystem.parentDirectory(directory)
        return [parent + "/lib/postgresql", parent + "/lib"]
    }

    /// Which of `names` exist as loadable libraries (`NAME.so`).
    public func availableLibraries(_ names: [String]) -> Set<String> {
        Set(names.filter { n in libraryDirectories.contains { FileSystem.exists($0 + "/\(n).so") } })
    }

    /// Runs `postgres --version` and parses it.
    ///
    /// Command: `postgres --version` — prints the version and exits without touching any data
    /// directory; it also works as root. See
    /// <https://www.postgresql.org/docs/15/app-postgres.html>.
    public func version() async throws(PostgresError) -> PostgresVersion {
        let output: CommandOutput
        do {
            output = try await runCommand(path("postgres"), ["--version"], environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C"])
        } catch {
            throw PostgresError(
                .binariesNotFound, "cannot run \(path("postgres")) --version: \(error); check the binary directory",
                underlying: error)
        }
        let text = output.text
        // A cancelled task ends the child: that is the cancellation, not a broken binary.
        if !output.succeeded && Task.isCancelled {
            throw PostgresError(.startFailed, "cancelled while asking \(path("postgres")) for its version", underlying: CancellationError())
        }
        guard output.succeeded, let version = PostgresVersion.parse(versionOutput: text) else {
            let status = output.status.map { "exit status \($0)" } ?? "no answer"
            throw PostgresError(
                .binariesNotFound,
                "\(path("postgres")) --version failed (\(status)): \(text.isEmpty ? "no output" : text); "
                    + "reinstall PostgreSQL or point the binary directory elsewhere")
        }
        return version
    }
}

func isExecutable(_ path: String) -> Bool {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
    return access(path, X_OK) == 0
}

