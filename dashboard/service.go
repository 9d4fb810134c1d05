// Service dashboard serves the live operations page at /dashboard: the fleet's figures,
// the savings estimate and the streaming flag's state, from the process's realtime
// server (encore.app/server; handler and views in dashboard/web and dashboard/views).
package dashboard
