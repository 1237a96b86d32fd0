// metadata_test.cc: what a pulled image keeps of its config.
#include <doctest/doctest.h>

#include "image/metadata.hh"
#include "util/error.hh"

using namespace ch;
using namespace ch::image;

TEST_SUITE("image/metadata") {

    TEST_CASE("metadata: every field of a Docker config") {
        const Metadata m = metadata_from_config(R"({
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "config": {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "WorkingDir": "/work",
                       "Entrypoint": ["/init"], "Cmd": ["sh", "-c", "x"],
                       "Labels": {"org.x": "1"}, "Volumes": {"/data": {}, "/a": {}},
                       "Shell": ["/bin/bash", "-c"]},
            "history": [{"created_by": "a"}, {"created_by": "b"}]})");
        CHECK(m.arch == "arm64/v8");
        CHECK(m.env == std::vector<std::string>{"PATH=/usr/bin", "LANG=C.UTF-8"});
        CHECK(m.cwd == "/work");
        CHECK(m.entrypoint == std::vector<std::string>{"/init"});
        CHECK(m.cmd.size() == 3);
        CHECK(m.labels.at("org.x") == "1");
        CHECK(m.volumes == std::vector<std::string>{"/a", "/data"});
        CHECK(m.shell == "/bin/bash -c");
        CHECK(m.history_len == 2);
    }

    TEST_CASE("metadata: a config without history, or without config, or with nulls") {
        CHECK(metadata_from_config(R"({"architecture":"amd64","config":{"Env":["A=1"]}})")
                  .env.size() == 1);
        CHECK(metadata_from_config(R"({"architecture":"amd64"})").env.empty());
        const Metadata m = metadata_from_config(
            R"({"architecture":"amd64","config":{"Env":null,"Cmd":null,"Labels":null},"history":null})");
        CHECK(m.env.empty());
        CHECK(m.history_len == 0);
    }

    TEST_CASE("metadata: wrong types and non-JSON are errors naming the field") {
        CHECK_THROWS_WITH_AS(metadata_from_config(R"({"config":{"Env":[1]}})"),
                             doctest::Contains("config.Env"), Error);
        CHECK_THROWS_WITH_AS(metadata_from_config(R"({"config":{"Labels":{"a":2}}})"),
                             doctest::Contains("config.Labels.a"), Error);
        CHECK_THROWS_WITH_AS(metadata_from_config("{"), doctest::Contains("not JSON"), Error);
        CHECK_THROWS_AS(metadata_from_config("[]"), Error);
        CHECK_THROWS_AS(metadata_from_config(std::string(max_config_bytes + 1, ' ')), Error);
    }

    TEST_CASE("metadata: JSON round trip, keys sorted, stable bytes") {
        Metadata m;
        m.ref = "localhost:5000/a/b:1";
        m.arch = "amd64";
        m.env = {"B=2", "A=1"};
        m.labels = {{"z", "1"}, {"a", "\x01"}};
        m.layer_digests = {"sha256:1", "sha256:2"};
        const std::string j = metadata_json(m);
        CHECK(j == metadata_json(m));
        CHECK(j.find("\"arch\"") < j.find("\"digests\""));
        const Metadata back = parse_metadata_json(j, "x");
        CHECK(back.ref == m.ref);
        CHECK(back.env == m.env);
        CHECK(back.labels == m.labels);
        CHECK(back.layer_digests == m.layer_digests);
        CHECK_THROWS_AS(parse_metadata_json("nope", "x"), Error);
    }

    TEST_CASE("metadata: /ch/environment is sorted by name, unreadable entries dropped") {
        std::vector<std::string> dropped;
        CHECK(environment_text({"PATH=/bin", "A=x=y", "NOEQUALS", "ML=a\nb", "=v", "A=z", "E="},
                               &dropped) == "A=z\nE=\nPATH=/bin\n");
        CHECK(dropped == std::vector<std::string>{"NOEQUALS", "ML=a\nb", "=v"});
        CHECK(environment_text({}).empty());
    }
}
