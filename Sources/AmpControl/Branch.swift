#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import ArgumentParser
import SystemSupport
import Varlink

/// The database of a git branch: `br_` and the branch name made safe (lower case; anything but
/// a-z, 0-9 and _ becomes _). Whenever that changed the name (`feat/x`, `Feat-X`), or it is
/// longer than PostgreSQL's 63-byte limit, a short hash of the real branch name follows, so
/// `feat/x`, `feat_x` and `Feat-X` get three databases, never one. The branch itself is kept
/// in the database's comment (`amp branch: NAME`): a database is handed out for a branch only
/// when that record names the branch, and `branch list` and `branch prune` read it.
enum BranchDatabase {
    static let prefix = "br_"
    static let commentPrefix = "amp branch: "
    static let maximumLength = 63

    static func name(forBranch branch: String) -> String {
        var safe = ""
        for scalar in branch.lowercased().unicodeScalars {
            safe.unicodeScalars.append(("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "_" ? scalar : "_")
        }
        let full = prefix + safe
        guard safe != branch || full.utf8.count > maximumLength else { return full }
        let hash = String(FNV1a.hex(branch).prefix(8))
        return String(full.prefix(maximumLength - hash.count - 1)) + "_" + hash
    }

    /// The branch a database comment names, if it is one of amp's.
    static func branch(fromComment comment: String?) -> String? {
        guard let comment, comment.hasPrefix(commentPrefix) else { return nil }
        return String(comment.dropFirst(commentPrefix.count))
    }
}

/// git, as the branch commands need it.
enum Git {
    static func run(_ base: String, _ arguments: [String]) async -> (Int32, String) {
        await runCaptured("git", ["-C", base] + arguments)
    }

    /// The checked-out branch of the work tree at `base`.
    static func currentBranch(_ base: String) async throws(AmpctlError) -> String {
        guard findExecutable("git") != nil else { throw AmpctlError(.unavailable, "git is not installed; --branch needs it (Debian: sudo apt install git)") }
        let (code, text) = await run(base, ["rev-parse", "--abbrev-ref", "HEAD"])
        guard code == 0 else { throw AmpctlError(.noInput, "\(base) is not a git work tree (\(text.trimmingWhitespace)); --branch needs one") }
        let branch = text.trimmingWhitespace
        guard branch != "HEAD", !branch.isEmpty else {
            throw AmpctlError(.dataError, "\(base) is on a detached HEAD, so there is no branch to name a database after; check out a branch, or leave --branch out")
        }
        return branch
    }

    /// The default branch: origin's HEAD, else init.defaultBranch, else main or master.
    static func defaultBranch(_ base: String) async -> String? {
        let (code, text) = await run(base, ["symbolic-ref", "--short", "refs/remotes/origin/HEAD"])
        if code == 0, let slash = text.firstIndex(of: "/") { return String(text[text.index(after: slash)...]).trimmingWhitespace }
        for candidate in ["main", "master"] where await branchExists(base, candidate) { return candidate }
        let (configured, name) = await run(base, ["config", "--get", "init.defaultBranch"])
        return configured == 0 ? name.trimmingWhitespace : nil
    }

    static func branchExists(_ base: String, _ branch: String) async -> Bool {
        await run(base, ["show-ref", "--verify", "--quiet", "refs/heads/" + branch]).0 == 0
    }
}

/// The connection of the project's current branch: the default database on the default
/// branch, else the branch's own, made on first use as a clone of the default one. The
/// database handed out is the one whose recorded branch is this branch; a database of the
/// branch's name that records another branch is never used.
func branchConnection(_ project: Project, _ client: MetadbClient) async throws(AmpctlError) -> Metadb.GetConnection.Reply {
    guard !project.base.isEmpty else { throw AmpctlError(.noInput, "--branch needs the project directory (run it inside the project)") }
    let branch = try await Git.currentBranch(project.base)
    let connection: Metadb.GetConnection.Reply
    do {
        connection = try await client.connectionInfo()
    } catch {
        throw AmpctlError(error, project: project)
    }
    if branch == (await Git.defaultBranch(project.base)) { return connection }
    let recorded = try recordedBranches(connection, project: project)
    if let mine = recorded.first(where: { $0.branch == branch }) { return connection.forDatabase(mine.database) }
    let database = BranchDatabase.name(forBranch: branch)
    if let existing = recorded.first(where: { $0.database == database }) {
        let owner = existing.branch.map { "branch \($0)" } ?? "no branch (it has no amp branch record)"
        throw AmpctlError(
            .dataError,
            "database \(database) belongs to \(owner), not to branch \(branch); nothing was changed: rename or drop it (`ampctl dropdb \(database)`) to let \(branch) have its own")
    }
    do {
        _ = try await client.createDatabase(database, from: connection.database)
    } catch {
        throw AmpctlError(error, project: project)
    }
    do throws(TransferError) {
        try connection.server.setComment(BranchDatabase.commentPrefix + branch, on: database)
    } catch {
        _ = try? await client.dropDatabase(database, force: true)
        throw AmpctlError(.failure, "cannot record branch \(branch) on database \(database): \(error.message); the new database was dropped again, try once more")
    }
    err("ampctl: created database \(database) for branch \(branch), a copy of \(connection.database)")
    return connection.forDatabase(database)
}

/// Every database of the cluster with the branch its comment records (nil: no amp record).
func recordedBranches(_ connection: Metadb.GetConnection.Reply, project: Project) throws(AmpctlError) -> [(database: String, branch: String?, size: Int64)] {
    do throws(TransferError) {
        return try connection.server.databasesWithComments().map { ($0.name, BranchDatabase.branch(fromComment: $0.comment), $0.size) }
    } catch {
        throw AmpctlError(.failure, "cannot list the branch databases: \(error.message); see `ampctl status \(project.name)`")
    }
}

struct BranchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "branch", abstract: "The databases of git branches (made by url/env/psql --branch).",
        subcommands: [BranchListCommand.self, BranchPruneCommand.self])
}

/// Every branch database of the project: (database, branch, size).
func branchDatabases(_ project: Project) async throws(AmpctlError) -> [(database: String, branch: String, size: Int64)] {
    let client = try connect(project)
    let connection: Metadb.GetConnection.Reply
    do { connection = try await client.connectionInfo() } catch { throw AmpctlError(error, project: project) }
    return try recordedBranches(connection, project: project).compactMap { r in r.branch.map { (r.database, $0, r.size) } }
}

struct BranchListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the branch databases and whether their branch still exists.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let project = try resolveProject(name, address: options.address, environment: Platform.current.environment)
            let rows = try await branchDatabases(project)
            var out_: [(String, String, Int64, Bool)] = []
            for r in rows { out_.append((r.database, r.branch, r.size, await Git.branchExists(project.base, r.branch))) }
            if options.json {
                outJSON(.array(out_.map { r in
                    var o: JSONObject = [:]
                    o["database"] = .string(r.0)
                    o["branch"] = .string(r.1)
                    o["size_bytes"] = .int(r.2)
                    o["branch_exists"] = .bool(r.3)
                    return .object(o)
                }))
                return .success
            }
            let w = max(8, out_.map(\.0.count).max() ?? 0)
            out("DATABASE".padding(toLength: w) + "  SIZE       BRANCH")
            for r in out_ { out(r.0.padding(toLength: w) + "  " + humanBytes(r.2).padding(toLength: 9) + "  " + r.1 + (r.3 ? "" : "  (gone from git)")) }
            if out_.contains(where: { !$0.3 }) { err("ampctl: some branches are gone; drop their databases with `ampctl branch prune`") }
            return .success
        }
    }
}

struct BranchPruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Drop the databases of branches that no longer exist in git (asks first).")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @Flag(name: .customLong("dry-run"), help: "Only list them.") var dryRun = false
    @Flag(help: "Do not ask first.") var yes = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let project = try resolveProject(name, address: options.address, environment: Platform.current.environment)
            guard !project.base.isEmpty else { throw AmpctlError(.noInput, "branch prune needs the project directory (run it inside the project)") }
            let current = try await Git.currentBranch(project.base)
            var gone: [(database: String, branch: String, size: Int64)] = []
            // Never the current branch's database, whatever its record says, nor one whose
            // recorded branch still exists.
            for r in try await branchDatabases(project) where r.branch != current && r.database != BranchDatabase.name(forBranch: current) {
                if !(await Git.branchExists(project.base, r.branch)) { gone.append(r) }
            }
            guard !gone.isEmpty else {
                err("ampctl: every branch database still has its branch; nothing to drop")
                return .success
            }
            for g in gone { out("\(g.database)  \(humanBytes(g.size))  branch \(g.branch) is gone") }
            if dryRun { return .success }
            try confirm("Drop these \(gone.count) database(s)?", yes: yes)
            let client = try connect(project)
            for g in gone {
                do throws(MetadbClientError) { try await client.dropDatabase(g.database, force: true) } catch { throw AmpctlError(error, project: project) }
            }
            err("ampctl: dropped \(gone.count) branch database(s)")
            return .success
        }
    }
}
