"""The only package that speaks psycopg: connections, migrations and the SQL of each engine step."""
