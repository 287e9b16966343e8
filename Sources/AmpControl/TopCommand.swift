#if canImport(Glibc)
import Glibc
#endif
import AmpProtocol
import ArgumentParser
import SystemSupport
import Varlink

/// `ampctl top`: the statements taking the most time, from pg_stat_statements.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "The statements taking the most total time (pg_stat_statements); --reset starts the statistics again.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    /// The project: `--project NAME` or the first argument.
    var name: String? { options.selection.project ?? positionalName }
    @Option(name: .customLong("db"), help: "Only this database.") var database: String?
    @Option(name: [.customShort("n"), .customLong("limit")], help: "How many statements (1–1000).") var limit = 20
    @Flag(name: .customLong("reset"), help: "Reset the statistics (pg_stat_statements_reset()).") var reset = false
    @OptionGroup var options: ProjectOptions

    func validate() throws {
        try options.selection.check(positionalName)
        guard (1...1000).contains(limit) else { throw ValidationError("--limit \(limit): use 1 to 1000") }
    }

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            if reset {
                try await withProject(name, address: options.address) { client throws(MetadbClientError) in try await client.resetStatementStatistics() }
                err("ampctl: statement statistics reset")
                return .success
            }
            let top = try await withProject(name, address: options.address) { client throws(MetadbClientError) in
                try await client.topStatements(database: database, limit: limit)
            }
            if options.json {
                outJSON(.array(top.map { .object((try? JSONValueEncoder().encodeObject($0)) ?? [:]) }))
                return .success
            }
            out("TOTAL ms   CALLS     MEAN ms   ROWS      DATABASE  QUERY")
            for s in top {
                let query = s.query.split(whereSeparator: \.isNewline).map { $0.trimmingWhitespace }.joined(separator: " ")
                out(format1(s.totalMs).padding(toLength: 9) + "  " + "\(s.calls)".padding(toLength: 8) + "  " + format1(s.meanMs).padding(toLength: 8)
                    + "  " + "\(s.rows)".padding(toLength: 8) + "  " + s.database.padding(toLength: 8) + "  " + String(query.prefix(120)))
            }
            if top.isEmpty { err("ampctl: no statements recorded yet (pg_stat_statements is preloaded; run some queries)") }
            return .success
        }
    }

    private func format1(_ v: Double) -> String { "\((v * 10).rounded() / 10)" }
}

/// `ampctl slow`: the latest auto_explain plans (statements over
/// `auto_explain.log_min_duration`, 250 ms by default), read from the unit's journal.
struct SlowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slow", abstract: "The latest plans of slow statements (auto_explain, from the journal of amp@NAME).")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    @Option(name: [.customShort("n"), .customLong("limit")], help: "How many plans (1–100).") var limit = 5
    @Flag(name: .customLong("json"), help: "Print data as JSON.") var json = false

    func validate() throws {
        try selection.check(positionalName)
        guard (1...100).contains(limit) else { throw ValidationError("--limit \(limit): use 1 to 100") }
    }

    /// Command: `journalctl --user-unit=amp@NAME.service -o json --no-pager -n 2000 PG_SEVERITY=LOG`.
    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let project = try registeredProject(name)
            guard findExecutable("journalctl") != nil else { throw AmpctlError(.unavailable, "journalctl is not installed (Debian: sudo apt install systemd)") }
            let (code, text) = await runCaptured("journalctl", ["--user-unit=\(project.unit)", "-o", "json", "--no-pager", "-n", "2000", "PG_SEVERITY=LOG"])
            guard code == 0 else { throw AmpctlError(.failure, "journalctl failed: \(text.split(separator: "\n").last.map(String.init) ?? "")") }
            var plans: [(time: String, message: String)] = []
            for line in text.split(separator: "\n") {
                guard let entry = try? JSONParser.parse(String(line)).objectValue,
                      let message = entry["MESSAGE"]?.stringValue, message.hasPrefix("duration: "), message.contains("plan:") else { continue }
                let micros = Int64(entry["__REALTIME_TIMESTAMP"]?.stringValue ?? "") ?? 0
                plans.append((utcTimestamp(micros / 1_000_000), message))
            }
            let latest = plans.suffix(limit)
            if json {
                outJSON(.array(latest.map { p in
                    var o: JSONObject = [:]
                    o["time"] = .string(p.time)
                    o["duration_ms"] = Double(p.message.dropFirst("duration: ".count).prefix { $0 != " " }).map { .float($0) } ?? .null
                    o["plan"] = .string(p.message)
                    return .object(o)
                }))
                return .success
            }
            if latest.isEmpty {
                err("ampctl: no slow statements in the journal of \(project.unit) (auto_explain logs those over auto_explain.log_min_duration, 250ms by default)")
            }
            for p in latest {
                out("── \(p.time)")
                out(p.message)
            }
            return .success
        }
    }
}
