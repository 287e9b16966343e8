#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpMetrics
import AmpPostgres
import AmpProtocol
import AmpRegistry
import ArgumentParser
import Varlink
import SystemSupport


/// `ampctl`: the client of amp.
public struct AmpctlCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ampctl",
        abstract: "Control the per-project PostgreSQL of amp.",
        discussion: """
            A project is named explicitly (its registry name, see `ampctl list`) or found as the \
            nearest .amp above the current directory.

            EXIT STATUS
            \(ExitStatus.ampctlCodes.map { "  \($0.rawValue)  \($0.ampctlMeaning)" }.joined(separator: "\n"))
            """,
        version: ampVersion,
        subcommands: [
            InitCommand.self, ListCommand.self, StatusCommand.self, URLCommand.self, EnvCommand.self, PsqlCommand.self,
            DatabasesCommand.self, CreatedbCommand.self, DropdbCommand.self,
            StartCommand.self, StopCommand.self, RestartCommand.self, LogsCommand.self,
            BranchCommand.self, SnapshotCommand.self, BackupCommand.self, RestoreCommand.self, RestorePointCommand.self, ResetCommand.self, TestdbCommand.self, TopCommand.self, SlowCommand.self, MetricsCommand.self, UpgradeCommand.self, ImportCommand.self, ExportCommand.self, PushCommand.self, PullCommand.self, DuCommand.self, GcCommand.self,
            ReplicaCommand.self, PromoteCommand.self, DoctorCommand.self, ForgetCommand.self,
        ])

    public init() {}
}

/// The entry point of the `ampctl` executable.
public enum AmpctlMain {
    public static func main() async {
        let command: any AsyncParsableCommand.Type = AmpctlCommand.self
        await command.main()
    }
}

/// Runs a command body, turning an ``AmpctlError`` into its line on stderr and its exit code.
func guarded(_ body: () async throws(AmpctlError) -> ExitStatus) async throws {
    let code: ExitStatus
    do {
        code = try await body()
    } catch {
        err("ampctl: \(error.message)")
        throw ExitCode(error.code.rawValue)
    }
    if code != .success { throw ExitCode(code.rawValue) }
}

// MARK: - status

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the state of a project's PostgreSQL (exit 3 when it is not running).")

    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var options: ProjectOptions
    @Flag(name: .customLong("history"), help: "Also the last hour from ampd's history: commits, rows, connections and size as sparklines (--json: the samples).")
    var history = false
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let env = Platform.current.environment
            let project = try resolveProject(name, address: options.address, environment: env)
            let o = Output(environment: env)
            let status = await fetchStatus(project)
            var samples: [MetadbHistorySample] = []
            if history, status.status != nil {
                samples = try await withProject(name, address: options.address) { client throws(MetadbClientError) in
                    try await client.history(since: epochNow() - 3600).samples
                }
            }
            if options.json {
                var o = status.json
                if !project.base.isEmpty {
                    let disk = DiskFacts(project)
                    o["wal_bytes"] = .int(Int64(clamping: disk.walBytes))
                    o["rollback_bytes"] = .int(Int64(clamping: disk.rollbackBytes))
                }
                if history { o["history"] = .array(samples.compactMap { (try? JSONValueEncoder().encodeObject($0)).map { JSONValue.object($0) } }) }
                outJSON(.object(o))
            } else {
                for line in await humanStatus(status, project: project, output: o) { out(line) }
                if history {
                    let unicode = (env["LC_ALL"] ?? env["LC_CTYPE"] ?? env["LANG"] ?? "").uppercased().replacing("-", with: "").contains("UTF8")
                    for line in historyLines(samples, unicode: unicode) { out(line) }
                }
            }
            return [.ready, .starting, .stopping, .external].contains(status.state) ? .success : .notRunning
        }
    }
}

/// What `status` and `list` show for a project: ampd's own status, or one made up from what
/// is on disk when no ampd answers ("inactive", or "unmanaged" for a PostgreSQL in the data
/// directory that no ampd runs). "external": ampd serves a server it does not run.
struct ProjectStatus: Sendable {
    enum State: String { case starting, ready, stopping, failed, external, unmanaged, inactive }
    var state: State
    var status: MetadbStatus?
    var detail: String

    var json: JSONObject {
        var o: JSONObject = status.flatMap { try? JSONValueEncoder().encodeObject($0) } ?? [:]
        o["state"] = .string(state.rawValue)
        if status == nil { o["phase"] = .string(detail) }
        return o
    }
}

func fetchStatus(_ project: Project) async -> ProjectStatus {
    if let client = try? MetadbClient(path: project.socket), let s = try? await client.status(timeout: .seconds(10)) {
        return ProjectStatus(state: ProjectStatus.State(rawValue: s.state.rawValue) ?? .failed, status: s, detail: s.phase)
    }
    // No ampd: a server in the data directory runs unmanaged.
    if let text = FileContents.text(project.ampDir + "/metadb/postmaster.pid"),
       let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }), kill(pid, 0) == 0,
       let exe = readLinkPath("/proc/\(pid)/exe"), exe.hasSuffix("/postgres") {
        return ProjectStatus(state: .unmanaged, status: nil, detail: "PostgreSQL (PID \(pid)) runs in \(project.ampDir)/metadb, but no ampd manages it")
    }
    return ProjectStatus(state: .inactive, status: nil, detail: "not running (no ampd at \(project.socket))")
}


/// What `status` reads off the disk: the WAL directory and the rollback copies (cheap: the
/// databases' own size comes from ampd).
struct DiskFacts {
    var walBytes: UInt64
    var rollbackBytes: UInt64

    init(_ project: Project) {
        walBytes = diskUsage(project.ampDir + "/metadb/pg_wal")
        rollbackBytes = UpgradeCommand.rollbackCopies(AmpDirectory(base: project.base, source: .flag)).reduce(0) { $0 &+ diskUsage($1.path) }
    }
}

func readLinkPath(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func humanStatus(_ ps: ProjectStatus, project: Project, output o: Output) async -> [String] {
    let dot: String
    switch ps.state {
    case .ready: dot = o.green("●")
    case .external: dot = ps.status?.healthy == false ? o.red("●") : o.green("●")
    case .starting, .stopping: dot = o.yellow("●")
    case .failed, .unmanaged: dot = o.red("●")
    case .inactive: dot = "○"
    }
    var lines = ["\(dot) \(o.bold(project.unit)) - PostgreSQL of \(project.name)"]
    func row(_ k: String, _ v: String) { lines.append(String(repeating: " ", count: max(0, 12 - k.count)) + k + ": " + v) }
    if let s = ps.status {
        var state = "\(s.state.rawValue)"
        if s.state == .external {
            if let h = s.healthy { state += h ? " (reachable)" : o.red(" (unreachable)") }
        } else if let h = s.healthy {
            state += h ? " (healthy)" : o.red(" (unhealthy)")
        }
        if let up = s.uptimeSeconds, s.state == .ready { state += " since \(humanDuration(up))" }
        row("State", state)
        if s.state != .ready && !(s.state == .external && s.healthy == true) { row("Phase", s.phase) }
        if let server = s.server { row("Server", server + (s.tls == true ? " (TLS)" : "") + ", not run by amp") }
        if let url = s.url { row("URL", url) }
        if let listen = s.listen { row("TCP", "\(listen)\(s.tls == true ? " with TLS" : ""), SCRAM password (show: ampctl url --tcp)") }
        if let v = s.version { row("Version", "PostgreSQL \(v)") }
        var pids = "ampd \(s.ampdPID)"
        if let pm = s.postmasterPID { pids += ", postmaster \(pm)" }
        row("PIDs", pids)
        if s.state == .external || s.server != nil {
            if let size = s.databaseSizeBytes { row("Size", humanBytes(size) + " (the databases this role may connect to)") }
        } else {
            var data = s.dataDir
            if let size = s.databaseSizeBytes { data += " (\(humanBytes(size))" }
            if !project.base.isEmpty {
                let disk = DiskFacts(project)
                data += (s.databaseSizeBytes == nil ? " (" : ", ") + "WAL \(humanBytes(Int64(clamping: disk.walBytes))))"
                if disk.rollbackBytes > 0 {
                    data += "; \(humanBytes(Int64(clamping: disk.rollbackBytes))) kept by `ampctl upgrade` (drop: ampctl upgrade --finish)"
                }
            } else if s.databaseSizeBytes != nil {
                data += ")"
            }
            row("Data", data)
        }
        if let c = s.connections { row("Connections", "\(c)") }
        if let archive = s.archive {
            var text = archive
            if let from = s.restorableFrom, let to = s.restorableTo {
                text += "; restorable from \(from) to \(to)" + (s.archiveLagSeconds.map { " (lag \(($0 * 10).rounded() / 10) s)" } ?? "")
            }
            row("Archive", text)
            if let problem = s.archiveProblem { row("", o.yellow(problem)) }
        }
        if let r = s.replication {
            func lag(_ bytes: Int64?, _ seconds: Double?) -> String {
                [bytes.map { "\(humanBytes($0)) behind" }, seconds.map { "\(($0 * 100).rounded() / 100) s" }].compactMap { $0 }.joined(separator: ", ")
            }
            if s.role == "standby" {
                let receiver = r.receiver.map { "\($0)" } ?? o.yellow("no WAL receiver (the primary is unreachable?)")
                row("Role", "standby of \(r.upstream ?? "?"), \(receiver)\(r.slot.map { ", slot \($0)" } ?? ""); replay \(lag(r.lagBytes, r.lagSeconds)) (promote: ampctl promote)")
            }
            for standby in r.standbys {
                row(standby.name == r.standbys.first?.name ? "Standbys" : "", "\(standby.name): \(standby.state), \(lag(standby.lagBytes, standby.lagSeconds))")
            }
        }
        if let pool = s.pool {
            let state = pool.state == "running" ? "running" : o.yellow(pool.state)
            let tcp = pool.listen.map { ", TCP \($0)" } ?? ""
            row("Pool", "PgBouncer \(state)\(pool.pid.map { " (PID \($0))" } ?? ""), \(pool.mode) pooling, \(pool.size) server connections per database, \(pool.maxClients) clients at most\(tcp) (url: ampctl url --pooled)")
            if pool.state == "running" {
                let wait = pool.clientsWaiting > 0 ? o.yellow("\(pool.clientsWaiting) waiting") + " (longest \((pool.maxWaitSeconds * 10).rounded() / 10) s)" : "0 waiting"
                row("", "clients \(pool.clientsActive) active, \(wait); servers \(pool.serversActive) active, \(pool.serversIdle) idle\(pool.restarts > 0 ? "; restarted \(pool.restarts)×" : "")")
            }
        }
        if let op = s.operation { row("Operation", op) }
        if s.restarts > 0 { row("Restarts", "\(s.restarts)") }
        if let e = s.lastError { row("Last error", e) }
    } else {
        row("State", ps.state == .unmanaged ? o.red("unmanaged") : "inactive")
        row("Detail", ps.detail)
        row("Amp dir", project.ampDir)
        if ps.state == .inactive { row("Start", startHint(project)) }
    }
    if project.registered, findExecutable("journalctl") != nil {
        let (code, text) = await runCaptured("journalctl", ["--user-unit=\(project.unit)", "-n", "8", "--no-pager", "-o", "short", "-q"])
        if code == 0, !text.isEmpty {
            lines.append("")
            lines += text.split(separator: "\n").map { o.dim(String($0)) }
        }
    }
    return lines
}

// MARK: - list

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List registered projects with state, URL and path (--json: each with its status, as `status --json` prints it).")

    @Flag(name: .customLong("json"), help: "Print data as JSON.")
    var json = false

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let env = Platform.current.environment
            guard let dir = Registry.defaultDirectory(environment: env) else { throw AmpctlError(.failure, "no home directory: no registry") }
            let (entries, problems) = Registry(directory: dir).load()
            for p in problems { err("ampctl: \(p) (skipped)") }
            let runtime = Metadb.runtimeDirectory(environment: env)
            var rows: [JSONValue] = []
            var table: [[String]] = [["NAME", "STATE", "URL", "PATH"]]
            // Every project's status at once: the list takes as long as the slowest answer, not
            // the sum (GetStatus waits up to 1 s for a busy server's statistics).
            let projects = entries.map { e in
                Project(name: e.name, base: e.base, registered: true, autostart: e.autostart, socket: Metadb.socketPath(runtimeDirectory: runtime, name: e.name))
            }
            let statuses = await withTaskGroup(of: (Int, ProjectStatus).self) { group in
                for (i, project) in projects.enumerated() { group.addTask { (i, await fetchStatus(project)) } }
                var found = [ProjectStatus?](repeating: nil, count: projects.count)
                for await (i, s) in group { found[i] = s }
                return found
            }
            for (e, status) in zip(entries, statuses) {
                guard let s = status else { continue }
                var o: JSONObject = ["name": .string(e.name), "path": .string(e.base), "autostart": .bool(e.autostart), "state": .string(s.state.rawValue)]
                if let url = s.status?.url { o["url"] = .string(url) }
                // The whole status (size, connections, uptime, restarts, …): what `status --json` prints.
                o["status"] = .object(s.json)
                rows.append(.object(o))
                table.append([e.name, s.state.rawValue, s.status?.url ?? "-", e.base])
            }
            if json {
                outJSON(.array(rows))
            } else if entries.isEmpty {
                err("no registered projects; register one with `ampctl init` in its directory")
            } else {
                let widths = (0..<4).map { c in table.map { $0[c].count }.max() ?? 0 }
                for r in table { out(r.enumerated().map { $0.offset == 3 ? $0.element : $0.element.padding(toLength: widths[$0.offset]) }.joined(separator: "  ")) }
            }
            return .success
        }
    }
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}

// MARK: - connection

/// The connection `url`, `env` and `psql` print or use: the default database, or with
/// `--branch` the database of the current git branch.
func connection(_ name: String?, address: String?, branch: Bool) async throws(AmpctlError) -> Metadb.GetConnection.Reply {
    guard branch else {
        return try await withProject(name, address: address) { client throws(MetadbClientError) in try await client.connectionInfo() }
    }
    let project = try resolveProject(name, address: address, environment: Platform.current.environment)
    return try await branchConnection(project, try connect(project))
}

/// The connection `url`, `env` and `psql` print or use, through the pool (`--pooled`) and over
/// TCP (`--tcp`) when asked.
func connection(_ name: String?, address: String?, branch: Bool, tcp: Bool, pooled: Bool) async throws(AmpctlError) -> Metadb.GetConnection.Reply {
    var c = try await connection(name, address: address, branch: branch)
    guard tcp || pooled else { return c }
    let project = try resolveProject(name, address: address, environment: Platform.current.environment).name
    if pooled {
        guard let p = c.pooled() else {
            throw AmpctlError(.unavailable, "\(project) has no connection pool; add `[pool]` with `enabled = true` to .amp/config.toml (PgBouncer: apt install pgbouncer), then restart it (`ampctl restart \(project)`)")
        }
        c = p
    }
    if tcp { c = try tcpConnection(c, project: project, pooled: pooled) }
    return c
}

/// The connection over TCP (`url --tcp`, `env --tcp`): `postgresql://USER:PASSWORD@HOST:PORT/DB`
/// and libpq's variables with `PGPASSWORD`, from the listener ampd reports and the password
/// in `$XDG_CONFIG_HOME/amp/tcp/NAME.password`.
func tcpConnection(_ c: Metadb.GetConnection.Reply, project: String, pooled: Bool = false) throws(AmpctlError) -> Metadb.GetConnection.Reply {
    guard let listen = c.listen else {
        if pooled {
            throw AmpctlError(.unavailable, "\(project)'s pool does not listen on TCP; add `listen = \"auto\"` (or \"127.0.0.1:6432\") to [pool] in .amp/config.toml, then restart it (`ampctl restart \(project)`)")
        }
        throw AmpctlError(.unavailable, "\(project) does not listen on TCP; add `listen = \"auto\"` (or \"127.0.0.1:5433\") to [postgres] in .amp/config.toml, then restart it (`ampctl restart \(project)`)")
    }
    let env = Platform.current.environment
    guard let file = AmpSecrets.tcpPasswordFile(project: project, environment: env) else {
        throw AmpctlError(.config, "neither XDG_CONFIG_HOME nor HOME is set, so the TCP password cannot be found; set HOME")
    }
    let password: String
    switch AmpSecrets.read(file) {
    case .failure(let problem): throw AmpctlError(.noPermission, "the TCP password file \(problem.message)")
    case .success(nil): throw AmpctlError(.unavailable, "\(file) is missing; ampd writes it when it starts with [postgres] listen: restart it (`ampctl restart \(project)`)")
    case .success(let text?): password = text.trimmingWhitespace
    }
    guard case .address(var host, let port)? = ListenAddress(parsing: listen) else {
        throw AmpctlError(.protocolError, "ampd reported a listen address that is not HOST:PORT (\(listen)); restart it")
    }
    // A listener on every address is reached here through loopback.
    if host == "0.0.0.0" || host == "*" { host = "127.0.0.1" }
    if host == "::" { host = "::1" }
    let urlHost = host.contains(":") ? "[\(host)]" : host
    var url = "postgresql://\(PostgresHandle.percentEncode(c.user)):\(PostgresHandle.percentEncode(password))@\(urlHost):\(port)/\(c.database)"
    var environment = ["PGHOST": host, "PGPORT": "\(port)", "PGUSER": c.user, "PGPASSWORD": password, "PGDATABASE": c.database]
    if c.tls == true {
        url += "?sslmode=require"
        environment["PGSSLMODE"] = "require"
    }
    environment["DATABASE_URL"] = url
    return .init(url: url, socketDirectory: "", port: port, database: c.database, user: c.user, environment: environment, listen: listen, tls: c.tls,
                 poolPort: c.poolPort, poolListen: c.poolListen)
}

struct URLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "url", abstract: "Print the connection URL.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @Flag(name: .customLong("branch"), help: "The database of the current git branch (made on first use as a copy of the default one).") var branch = false
    @Flag(name: .customLong("tcp"), help: "The URL over TCP, with the password ([postgres] listen, or with --pooled [pool] listen, must be set).") var tcp = false
    @Flag(name: .customLong("pooled"), help: "The URL through the connection pool (PgBouncer; [pool] enabled must be set).") var pooled = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let c = try await connection(name, address: options.address, branch: branch, tcp: tcp, pooled: pooled)
            if options.json { outJSON(c) } else { out(c.url) }
            return .success
        }
    }
}

struct EnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: "Print libpq variables for eval or direnv: eval \"$(ampctl env)\".")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @Flag(name: .customLong("branch"), help: "The database of the current git branch (made on first use as a copy of the default one).") var branch = false
    @Flag(name: .customLong("tcp"), help: "Variables for TCP, with PGPASSWORD ([postgres] listen, or with --pooled [pool] listen, must be set).") var tcp = false
    @Flag(name: .customLong("pooled"), help: "Variables for the connection pool (PgBouncer; [pool] enabled must be set).") var pooled = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let c = try await connection(name, address: options.address, branch: branch, tcp: tcp, pooled: pooled)
            if options.json {
                outJSON(c.environment)
            } else {
                for (k, v) in c.environment.sorted(by: { $0.key < $1.key }) { out("export \(k)=\(shellQuote(v))") }
            }
            return .success
        }
    }
}

struct PsqlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "psql", abstract: "Run psql connected to the project: ampctl psql [NAME] [-- ARGS].")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    @Option(name: .customLong("address"), help: ArgumentHelp("Varlink address of ampd.", valueName: "unix:PATH")) var address: String?
    @Option(name: [.customShort("d"), .customLong("dbname")], help: "Database (default postgres).") var database: String?
    @Flag(name: .customLong("branch"), help: "The database of the current git branch (made on first use as a copy of the default one).") var branch = false
    @Flag(name: .customLong("pooled"), help: "Through the connection pool (PgBouncer; [pool] enabled must be set).") var pooled = false
    @Argument(parsing: .postTerminator, help: "Arguments for psql.") var arguments: [String] = []

    func validate() throws {
        try selection.check(positionalName)
        if branch && database != nil { throw ValidationError("--branch and -d both name the database; give one") }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let c = try await connection(name, address: address, branch: branch, tcp: false, pooled: pooled)
            var url = c.url
            // An external server's password file (amp's credential) for psql too.
            if let passFile = c.environment["PGPASSFILE"] { setenv("PGPASSFILE", passFile, 1) }
            if let database {
                guard Metadb.databaseNameProblem(database) == nil || database == "postgres" else {
                    throw AmpctlError(.dataError, "-d \(database): \(Metadb.databaseNameProblem(database) ?? "")")
                }
                url = Metadb.url(url, database: database)
            }
            throw execReplacing("psql", [url] + arguments)
        }
    }
}

// MARK: - databases

struct DatabasesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "databases", abstract: "List the project's databases.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    func validate() throws { try options.selection.check(positionalName) }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let dbs = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.databases() }
            if options.json {
                outJSON(dbs)
            } else {
                let w = max(4, dbs.map(\.name.count).max() ?? 0)
                out("NAME".padding(toLength: w) + "  SIZE       OWNER")
                for d in dbs { out(d.name.padding(toLength: w) + "  " + humanBytes(d.sizeBytes).padding(toLength: 9) + "  " + d.owner) }
            }
            return .success
        }
    }
}

struct CreatedbCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "createdb", abstract: "Create a database, empty or as a copy of another (--from).")
    @Argument(help: "Database name (a-z, 0-9, _ and -).") var database: String
    @Option(name: .customLong("from"), help: ArgumentHelp("Clone this database (CREATE DATABASE … TEMPLATE; WAL_LOG below 256 MB, FILE_COPY above).", valueName: "SRC")) var template: String?
    @Flag(name: .customLong("force"), help: "With --from: end the other sessions of SRC first.") var force = false
    var name: String? { options.selection.project }
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            if let reason = Metadb.databaseNameProblem(database) ?? Metadb.reservedDatabaseNameProblem(database) {
                throw AmpctlError(.dataError, "database name \(database): \(reason)")
            }
            let db = try await withProject(name, address: options.address) { client throws(MetadbClientError) in
                try await client.createDatabase(database, from: template, force: force)
            }
            let origin = template.map { " as a copy of \($0)" } ?? ""
            if options.json { outJSON(db) } else { err("created database \(database)\(origin); connect: ampctl psql -d \(database)") }
            return .success
        }
    }
}

struct DropdbCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dropdb", abstract: "Drop a database.")
    @Argument(help: "Database name.") var database: String
    var name: String? { options.selection.project }
    @Flag(name: .customLong("force"), help: "Terminate its connections first.") var force = false
    @Flag(name: .customLong("yes"), help: "Do not ask (needed without a terminal).") var yes = false
    @OptionGroup var options: ProjectOptions

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let status = try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.status() }
            let place = status.server.map { "on the external server \($0)" } ?? "of \(status.project)"
            try confirm("drop database \(database) \(place)? Its data is gone for good (keep a copy first: ampctl export --db \(database) FILE)", yes: yes)
            try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.dropDatabase(database, force: force) }
            err("dropped database \(database) \(place)")
            return .success
        }
    }
}

/// `status --history`: the last hour as sparklines, one line per series, with its latest and
/// highest value; a line saying why when there is not enough yet.
func historyLines(_ samples: [MetadbHistorySample], unicode: Bool, width: Int = 48) -> [String] {
    guard let first = samples.first, let last = samples.last, samples.count > 2 else {
        return ["History: not enough samples yet (ampd takes one every 5 s)"]
    }
    func rates(_ key: KeyPath<MetadbHistorySample, Double>) -> [Double] { Sparkline.rates(samples.map { ($0.time, $0[keyPath: key]) }) }
    func line(_ label: String, _ values: [Double], _ format: (Double) -> String) -> String {
        let spark = Sparkline.render(values, width: width, unicode: unicode)
        return label.padding(toLength: 16) + spark.padding(toLength: width) + "  now " + format(values.last ?? 0) + ", max " + format(values.max() ?? 0)
    }
    let perSecond: (Double) -> String = { v in v >= 100 ? "\(Int(v.rounded()))/s" : "\((v * 10).rounded() / 10)/s" }
    let minutes = Int(((last.time - first.time) / 60).rounded())
    var out = ["History: the last \(minutes) min, \(samples.count) samples"]
    out.append(line("  commits", rates(\.committed), perSecond))
    out.append(line("  rows read", rates(\.rowsRead), perSecond))
    out.append(line("  rows written", rates(\.rowsWritten), perSecond))
    out.append(line("  connections", samples.map { Double($0.activeConnections + $0.idleConnections + $0.idleInTransactionConnections) }) { "\(Int($0))" })
    out.append(line("  size", samples.map(\.databaseBytes)) { humanBytes(Int64($0)) })
    let restarts = last.restarts - first.restarts
    let notReady = samples.filter { $0.state != "ready" }.count
    out.append("  restarts      \(restarts) in this time\(notReady > 0 ? ", not ready in \(notReady) samples" : "")")
    return out
}
