import { Module } from '@nestjs/common';
import { AdminController } from './admin.controller';
import { IndexController } from './index.controller';
import { WebhooksApi } from './webhooks-api';

/** The admin console on the internal port; it uses the server API like any other client. */
@Module({ controllers: [AdminController, IndexController], providers: [WebhooksApi] })
export class AdminModule {}
