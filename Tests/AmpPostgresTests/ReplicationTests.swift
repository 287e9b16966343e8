import AmpPostgres
import Testing

@Suite("replication: slot names, the primary's facts, the status figures, sources (pure)")
struct ReplicationTests {
    @Test func slotNamesAreValidIdentifiers() {
        #expect(Replication.slotName(standby: "shop-replica.2") == "amp_replica_shop_replica_2")
        #expect(Replication.slotName(standby: "Ünï") == "amp_replica__n_")
        #expect(Replication.slotName(standby: String(repeating: "a", count: 200)).count == 62)
    }

    @Test func aPrimaryThatCannotFeedAStandbySaysWhy() throws {
        let ok = try #require(Replication.PrimaryFacts(row: ["150020", "f", "replica", "10", "t", nil]))
        #expect(ok.major == 15 && ok.problem == nil && ok.slotActive == nil)
        #expect(Replication.PrimaryFacts(row: ["150020", "t", "replica", "10", "t", "f"])?.problem?.contains("itself a standby") == true)
        #expect(Replication.PrimaryFacts(row: ["150020", "f", "minimal", "0", "t", nil])?.problem?.contains("wal_level") == true)
        #expect(Replication.PrimaryFacts(row: ["150020", "f", "replica", "0", "t", nil])?.problem?.contains("max_wal_senders") == true)
        #expect(Replication.PrimaryFacts(row: ["150020", "f", "replica", "10", "f", nil])?.problem?.contains("REPLICATION") == true)
        #expect(Replication.PrimaryFacts(row: ["x"]) == nil)
        #expect(Replication.factsQuery(slot: "a'b").contains("'a''b'"))
    }

    @Test func figuresOfAStandbyAndOfAPrimary() throws {
        let standby = try #require(Replication.Figures(columns: ["true", "streaming\t127.0.0.1\t5433\tamp_replica_b", "8192", "0.25", nil]))
        #expect(standby.standby && standby.receiver == "streaming" && standby.upstream == "127.0.0.1:5433" && standby.slot == "amp_replica_b")
        #expect(standby.lagBytes == 8192 && standby.lagSeconds == 0.25 && standby.standbys.isEmpty)
        let socket = try #require(Replication.Figures(columns: ["true", "streaming\t/p/.amp/metadb\t5432\t", "0", "0", nil]))
        #expect(socket.upstream == "/p/.amp/metadb/.s.PGSQL.5432" && socket.slot == nil)
        let v6 = try #require(Replication.Figures(columns: ["true", "\t::1\t5432\t", nil, nil, nil]))
        #expect(v6.upstream == "[::1]:5432" && v6.receiver == nil)
        let primary = try #require(Replication.Figures(columns: ["false", nil, nil, nil, "b\tstreaming\t0\t0.001\nc\tcatchup\t1048576\t"]))
        #expect(!primary.standby && primary.standbys.count == 2)
        let c = primary.standbys[1]
        #expect(c.name == "c" && c.state == "catchup" && c.lagBytes == 1_048_576 && c.lagSeconds == nil)
        #expect(Replication.Figures(columns: ["false"]) == nil)
    }

    @Test func aURLSourceKeepsItsPasswordOutOfMessages() throws {
        let s = try Replication.Source.url("postgresql://app:s3cret@db.example:5433/shop?sslmode=require", application: "standby").get()
        #expect(s.display == "host=db.example port=5433 user=app sslmode=require")
        #expect(s.conninfo.contains("password='s3cret'") && s.conninfo.contains("application_name='standby'") && s.conninfo.contains("dbname='postgres'"))
        #expect(!s.display.contains("s3cret"))
        if case .success = Replication.Source.url("postgresql://[broken", application: "x") { Issue.record("accepted a broken URL") }
        let socket = Replication.Source.socket(directory: "/p/.amp/metadb", port: 5432, user: "me", application: "b")
        #expect(socket.display == "the socket /p/.amp/metadb/.s.PGSQL.5432" && socket.conninfo.contains("host='/p/.amp/metadb'"))
    }
}
