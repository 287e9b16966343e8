/// One metric family of the Prometheus text format: its name, help, type and samples.
/// See <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>.
public struct MetricFamily: Sendable, Equatable {
    public enum Kind: String, Sendable { case gauge, counter }

    /// One sample: its labels, in order, and its value.
    public struct Sample: Sendable, Equatable {
        public var labels: [Label]
        public var value: Double
        public init(_ labels: [Label] = [], _ value: Double) {
            self.labels = labels
            self.value = value
        }
    }

    public struct Label: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var name: String
    public var help: String
    public var kind: Kind
    public var samples: [Sample]

    public init(_ name: String, _ kind: Kind, _ help: String, _ samples: [Sample]) {
        self.name = name
        self.kind = kind
        self.help = help
        self.samples = samples
    }
}

/// Renders metric families in the Prometheus text format (version 0.0.4), which
/// `promtool check metrics` accepts: `# HELP`, `# TYPE`, then one line per sample, label
/// values escaped, families without samples left out.
public enum PrometheusText {
    /// The `Content-Type` of the format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func render(_ families: [MetricFamily]) -> String {
        var out = ""
        for family in families where !family.samples.isEmpty {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name
                if !sample.labels.isEmpty {
                    out += "{" + sample.labels.map { "\($0.name)=\"\(escapeLabel($0.value))\"" }.joined(separator: ",") + "}"
                }
                out += " " + format(sample.value) + "\n"
            }
        }
        return out
    }

    /// `\` → `\\`, `"` → `\"`, a line break → `\n`.
    static func escapeLabel(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `\` → `\\`, a line break → `\n`.
    static func escapeHelp(_ s: String) -> String { s.replacing("\\", with: "\\\\").replacing("\n", with: "\\n") }

    /// Whole numbers without a fraction, `NaN`, `+Inf`, `-Inf`.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

extension MetricFamily {
    /// The family under Prometheus's naming rules, which `promtool check metrics` checks:
    /// counters end in `_total`, and no other type ends in `_count` (`pg_stat_activity_count`
    /// becomes `pg_stat_activity_connections`, `pg_locks_count` `pg_locks`). postgres_exporter's
    /// names (the default, for its dashboards) break both rules.
    public var conventional: MetricFamily {
        var f = self
        if f.kind == .counter, !f.name.hasSuffix("_total") { f.name += "_total" }
        if f.kind != .counter, f.name.hasSuffix("_count") {
            f.name = f.name == "pg_stat_activity_count" ? "pg_stat_activity_connections" : String(f.name.dropLast(6))
        }
        return f
    }
}
