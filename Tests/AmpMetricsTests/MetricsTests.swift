@testable import AmpMetrics
import Testing

@Suite("metrics: the Prometheus text format, names, PostgreSQL's rows, and the endpoint's HTTP (pure)")
struct MetricsTests {
    @Test("families render with HELP and TYPE, labels escaped, whole numbers without a fraction; empty families left out")
    func render() {
        let text = PrometheusText.render([
            MetricFamily("pg_up", .gauge, "Whether PostgreSQL answered", [.init([], 1)]),
            MetricFamily("x_total", .counter, "A help\nwith a line break and \\", [.init([.init("datname", "a\"b\\c\nd")], 2.5)]),
            MetricFamily("empty", .gauge, "nothing", []),
            MetricFamily("odd", .gauge, "odd values", [.init([], .nan), .init([.init("k", "v")], .infinity), .init([.init("k", "w")], -3)]),
        ])
        #expect(text == """
            # HELP pg_up Whether PostgreSQL answered
            # TYPE pg_up gauge
            pg_up 1
            # HELP x_total A help\\nwith a line break and \\\\
            # TYPE x_total counter
            x_total{datname="a\\"b\\\\c\\nd"} 2.5
            # HELP odd odd values
            # TYPE odd gauge
            odd NaN
            odd{k="v"} +Inf
            odd{k="w"} -3

            """)
    }

    @Test("Prometheus's naming rules: counters end in _total, no gauge ends in _count")
    func conventional() {
        #expect(MetricFamily("pg_stat_database_xact_commit", .counter, "", []).conventional.name == "pg_stat_database_xact_commit_total")
        #expect(MetricFamily("amp_restarts_total", .counter, "", []).conventional.name == "amp_restarts_total")
        #expect(MetricFamily("pg_stat_activity_count", .gauge, "", []).conventional.name == "pg_stat_activity_connections")
        #expect(MetricFamily("pg_locks_count", .gauge, "", []).conventional.name == "pg_locks")
        #expect(MetricFamily("pg_up", .gauge, "", []).conventional.name == "pg_up")
    }

    @Test("PostgreSQL's rows become postgres_exporter's series; short or null rows are skipped")
    func rows() {
        let database = PostgresMetrics.queries[0].families([["5", "postgres", "7757159"] + Array(repeating: "3", count: PostgresMetrics.databaseColumns.count),
                                                           ["5", nil, "1"], ["6"]])
        #expect(database.first?.name == "pg_database_size_bytes" && database.first?.samples == [.init([.init("datname", "postgres")], 7757159)])
        let commits = database.first { $0.name == "pg_stat_database_xact_commit" }
        #expect(commits?.kind == .counter && commits?.samples == [.init([.init("datid", "5"), .init("datname", "postgres")], 3)])
        let activity = PostgresMetrics.queries[1].families([["postgres", "active", "2"], ["postgres", "idle", "x"]])
        #expect(activity == [MetricFamily("pg_stat_activity_count", .gauge, "Number of connections in this state", [.init([.init("datname", "postgres"), .init("state", "active")], 2)])])
        let locks = PostgresMetrics.queries[2].families([["postgres", "AccessShareLock", "4"]])
        #expect(locks.first?.samples.first?.labels.last == .init("mode", "accesssharelock"))
        let primary = PostgresMetrics.queries[3].families([["0", "16777216", nil, "100"]])
        #expect(primary.map(\.name) == ["pg_replication_is_replica", "amp_wal_bytes_total", "pg_settings_max_connections"])
        let standby = PostgresMetrics.queries[3].families([["1", "16777216", "0.5", "100"]])
        #expect(standby.last?.name == "pg_replication_lag_seconds" && standby.last?.samples.first?.value == 0.5)
        #expect(PostgresMetrics.queries[3].families([]).isEmpty)
        let replicas = PostgresMetrics.queries[4].families([["amp_archive", "local", "streaming", "0", nil]])
        #expect(replicas[0].samples.count == 1 && replicas[1].samples.isEmpty)
    }

    @Test("the endpoint routes GET and HEAD /metrics, refuses other paths and methods and what is not HTTP/1.x")
    func http() {
        func route(_ s: String) -> MetricsHTTP.Route { MetricsHTTP.route(Array(s.utf8)) }
        #expect(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == .metrics(headOnly: false))
        #expect(route("GET /metrics?x=1 HTTP/1.0\r\n\r\n") == .metrics(headOnly: false))
        #expect(route("HEAD /metrics HTTP/1.1\r\n\r\n") == .metrics(headOnly: true))
        #expect(route("GET / HTTP/1.1\r\n\r\n") == .status(404, "Not Found"))
        #expect(route("POST /metrics HTTP/1.1\r\n\r\n") == .status(405, "Method Not Allowed"))
        for bad in ["", "GET /metrics", "GET /metrics SPDY/3\r\n\r\n", "\r\n", "GET  /metrics HTTP/1.1\r\n"] {
            #expect(route(bad) == .status(400, "Bad Request"), "\(bad)")
        }
        #expect(MetricsHTTP.isComplete(Array("GET / HTTP/1.1\r\nA: b\r\n\r\n".utf8)) && MetricsHTTP.isComplete(Array("GET / HTTP/1.0\n\n".utf8)))
        #expect(!MetricsHTTP.isComplete(Array("GET / HTTP/1.1\r\n".utf8)) && !MetricsHTTP.isComplete([]))
        let response = String(decoding: MetricsHTTP.response(status: 200, reason: "OK", contentType: PrometheusText.contentType, body: "pg_up 1\n"), as: UTF8.self)
        #expect(response == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 8\r\nConnection: close\r\n\r\npg_up 1\n")
        #expect(MetricsHTTP.response(status: 200, reason: "OK", contentType: "t", body: "abc", headOnly: true).count < response.utf8.count)
    }
}
