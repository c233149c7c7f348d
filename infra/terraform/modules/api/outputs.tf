output "api_url" {
  value = aws_apigatewayv2_api.golos.api_endpoint
}

output "api_id" {
  value = aws_apigatewayv2_api.golos.id
}

output "stage_name" {
  value = aws_apigatewayv2_stage.default.name
}

output "web_acl_arn" {
  value = aws_wafv2_web_acl.edge.arn
}
