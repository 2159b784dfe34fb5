// Starts GraphiQL (window.GraphiQL, React and ReactDOM come from the vendored
// UMD scripts loaded before this one). The server puts the configuration in
// the page as JSON: the GraphQL endpoint's path, the example tabs, the
// headers to start with, and the nonce of the one <style> element GraphiQL
// makes (react-remove-scroll reads __webpack_nonce__ while a dialog is open).
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('playground-config').textContent);
  window.__webpack_nonce__ = config.styleNonce;

  // Subscriptions: graphql-transport-ws (graphql-ws) on this origin.
  var wsURL = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + config.endpoint;
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint, subscriptionUrl: wsURL });

  var props = {
    fetcher: fetcher,
    defaultTabs: config.tabs,
    // Headers (a token) are not kept across reloads unless the user turns
    // that on in GraphiQL's settings.
    defaultEditorToolsVisibility: true
  };
  // The schema's introspection, made by the server (schema.js): GraphiQL
  // sends no introspection request. GraphiQL 4 takes a GraphQLSchema only,
  // built with the graphql-js it bundles (GraphiQL.GraphQL).
  if (window.playgroundSchema) {
    try {
      props.schema = GraphiQL.GraphQL.buildClientSchema(window.playgroundSchema);
    } catch (e) {
      console.warn('playground: schema.js does not build a schema; GraphiQL introspects the endpoint instead', e);
    }
  }
  if (config.headers) {
    props.defaultHeaders = config.headers;
  }
  // GraphiQL 4 fills the first tab's editors from defaultTabs[0] except its
  // variables: hand those over too, unless tabs saved from an earlier visit
  // are restored (then the editors are theirs).
  var saved = null;
  try {
    saved = window.localStorage.getItem('graphiql:tabState');
  } catch (e) { /* storage blocked: nothing saved */ }
  if (!saved && config.tabs.length > 0 && config.tabs[0].variables) {
    props.variables = config.tabs[0].variables;
  }
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
})();
