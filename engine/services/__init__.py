"""The services by noun (definitions, users, customers, instances, tasks, timers, time, audit, KPI,
designer) over one shared context; ``engine.service.Kefu`` composes them."""
