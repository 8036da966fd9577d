"""exportd's log lines: the job a line is about (:mod:`exportd.logs.context`), their JSON
form (:mod:`exportd.logs.json_lines`) and the stderr handler of the services
(:mod:`exportd.logs.handler`)."""
