import AmpProtocol
import ArgumentParser
import SystemSupport
import Varlink

/// `ampctl top`: the statements taking the most time, from pg_stat_statements.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "The statements taking the most total time (pg_stat_statements); --reset starts the statistics again.")
    @Argument(help: "Project name.", completion: projectCompletion) var name: String?
    @Option(name: .customLong("db"), help: "Only this database.") var database: String?
    @Option(name: [.customShort("n"), .customLong("limit")], help: "How many statements (1–1000).") var limit = 20
    @Flag(name: .customLong("reset"), help: "Reset the statistics (pg_stat_statements_reset()).") var reset = false
    @OptionGroup var options: ProjectOptions

    func validate() throws {
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
