pytest_plugins = ["tests.fixtures_pg", "tests.fixtures_s3"]
