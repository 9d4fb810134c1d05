// Service dashboard serves the operator's console at /dashboard: the fleet's figures,
// alerts, the savings estimate and the streaming flag's state, and, with the flags admin
// key, the busiest channels, a connection inspector and a test publish, from the
// process's realtime server (encore.app/server; handler and views in dashboard/web and
// dashboard/views).
package dashboard
