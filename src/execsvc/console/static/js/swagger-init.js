// Starts Swagger UI on /docs. A file of its own, not an inline script, so /docs can forbid inline scripts (CSP);
// the page names the OpenAPI document in data-openapi-url.
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  // No badge that would ask a validator on another host about the document.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
